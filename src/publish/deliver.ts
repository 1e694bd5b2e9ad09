import { KocacheError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { Pushable } from '../oci/pushable.js';
import { formatReference, formatRepository, withIdentifier } from '../reference/reference.js';
import type { BlobPusher } from '../remote/blob-pusher.js';
import type { RegistryClient } from '../remote/client.js';
import { pushImage } from '../remote/push.js';
import type { PublishResult } from './options.js';
import type { PublishPlan } from './plan.js';

export type Delivered = Omit<PublishResult, 'platforms' | 'layers'>;

/** Where the image goes, once built: the registry (with the pushes already under way), or a file. */
export interface Delivery {
  client: RegistryClient | undefined;
  pusher: BlobPusher | undefined;
  /** What the target's tag pointed at before the push (targetDigest). */
  current: Digest | undefined;
}

/** Pushes the image under every tag, or writes it as an OCI layout or a docker-archive. */
export async function deliver(plan: PublishPlan, image: Pushable, d: Delivery): Promise<Delivered> {
  const digest = image.descriptor.digest;
  const named = plan.repo ? `${formatRepository(plan.repo)}@${digest}` : digest;
  const none = { uploaded: 0, mounted: 0, present: 0, written: 0, bytesUploaded: 0, bytesWritten: 0, imageId: null };
  const output = plan.output;
  switch (output.kind) {
    case 'registry': {
      const repo = plan.repo!;
      const pushed = await pushImage(d.client!, repo, image, { jobs: plan.jobs, pusher: d.pusher, current: d.current });
      // The other tags: the same manifest bytes, so the same digest; every blob is there already.
      for (const tag of plan.tags.slice(1)) await d.client!.putManifest(withIdentifier(repo, { tag }), image.bytes, image.descriptor.mediaType);
      return {
        ...none, reference: pushed.reference, digest: pushed.digest, tags: plan.tags, output: 'registry',
        uploaded: pushed.uploaded, mounted: pushed.mounted, present: pushed.present, bytesUploaded: pushed.bytesUploaded,
      };
    }
    case 'oci': {
      // The file writers are loaded only for a file output: a push never uses them.
      const { writeLayout } = await import('../layout/write.js');
      // skopeo's oci:DIR:TAG; else the tags; else latest. Each tag replaces its own entry.
      const tags = output.tag !== undefined ? [output.tag] : plan.tags;
      let written = 0;
      let present = 0;
      for (const tag of tags) {
        const r = await writeLayout(output.path, image, {
          refName: tag,
          imageName: plan.repo ? formatReference(withIdentifier(plan.repo, { tag })) : undefined,
          jobs: plan.jobs,
        });
        if (written === 0 && present === 0) present = r.present; // the first write tells what was there
        written += r.written;
      }
      return { ...none, reference: named, digest, tags, output: `oci:${output.path}`, written, present };
    }
    case 'docker-archive': {
      if (image.kind !== 'manifest') throw new KocacheError('input', 'docker-archive holds one image, not an index', { exitCode: 2 });
      const { writeDockerArchive } = await import('../tarball/write.js');
      const repoTags = plan.repo ? plan.tags.map((tag) => formatReference(withIdentifier(plan.repo!, { tag }))) : [];
      const r = await writeDockerArchive(output.path, image, { repoTags, mtime: plan.epoch });
      return {
        ...none, reference: named, digest, tags: plan.repo ? plan.tags : [], output: `docker-archive:${output.path}`,
        written: image.layers.length + 1, bytesWritten: r.bytes, imageId: r.imageId,
      };
    }
  }
}
