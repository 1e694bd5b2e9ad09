import type { CommandModule } from 'yargs';
import { buildCommand } from './build.js';
import { gcCommand } from './gc.js';
import { lsCommand } from './ls.js';
import { publishCommand } from './publish.js';
import { pushCommand } from './push.js';
import { warmCommand } from './warm.js';

/** Every subcommand; one file each in this folder. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [buildCommand, gcCommand, lsCommand, publishCommand, pushCommand, warmCommand];
