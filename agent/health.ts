import { createServer, type Server } from 'node:http';
import { KburError } from '../shared/errors.js';
import type { AgentMetrics } from './metrics.js';
import type { AgentState } from './state.js';

/**
 * Plain HTTP for probes: /healthz says the process is up; /readyz says the config is loaded and
 * the local etcd member answers; /metrics is for Prometheus. No secrets: only what a probe, a load
 * balancer or a scraper needs.
 */
export function startHealthServer(address: string, state: () => AgentState, metrics?: AgentMetrics): Promise<Server> {
  const server = createServer((req, res) => {
    const reply = (code: number, body: object): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body) + '\n');
    };
    if (req.url === '/healthz') return reply(200, { status: 'ok' });
    if (req.url === '/readyz') {
      const s = state();
      s.refreshEtcd()
        .then(() => s.etcd.status())
        .then(
          (st) =>
            reply(
              st.reachable ? 200 : 503,
              st.reachable
                ? { status: 'ready', node: s.config.node, etcd: st.endpoint }
                : { status: 'not ready', node: s.config.node, etcd: st.endpoint, error: st.error },
            ),
          (err: unknown) => reply(503, { status: 'not ready', error: String(err) }),
        );
      return;
    }
    if (metrics && req.url === '/metrics') {
      metrics.render().then(
        ({ contentType, text }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(text);
        },
        (err: unknown) => reply(500, { error: String(err) }),
      );
      return;
    }
    reply(404, { error: `not found: try /healthz, /readyz${metrics ? ' or /metrics' : ''}` });
  });
  const [host, port] = splitHostPort(address);
  return new Promise((resolve, reject) => {
    server.once('error', (err) =>
      reject(
        new KburError('UNAVAILABLE', `cannot listen for health checks on ${address}: ${err.message}`, {
          cause: err,
          hint: 'change health in the agent config',
        }),
      ),
    );
    server.listen(port, host, () => resolve(server));
  });
}

export function splitHostPort(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), Number(address.slice(i + 1))];
}
