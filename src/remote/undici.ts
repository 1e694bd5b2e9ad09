import Agent from 'undici/lib/dispatcher/agent.js';
import buildConnector from 'undici/lib/core/connect.js';
import api from 'undici/lib/api/index.js';
import Dispatcher from 'undici/lib/dispatcher/dispatcher.js';

/**
 * The parts of undici the registry client uses: the Agent, its request API and the connector
 * (for CAs given late, see extra-ca.ts). Redirects are followed by Transport.send, which decides
 * per hop what credentials go along. undici's front door (index.js) also loads fetch, WebSocket,
 * cookies, mock agents and cache stores, which every `kocache publish`, `push` and `warm` would load
 * for nothing (measured in the register of docs/performance.md).
 */
// What undici's index.js does so that every dispatcher has .request(), .stream() and the rest.
Object.assign(Dispatcher.prototype, api);

export { Agent, buildConnector };
