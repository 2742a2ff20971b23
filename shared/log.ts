import winston from 'winston';

export type Logger = winston.Logger;

/** Keys whose values never reach a log line, whatever logs them. */
const SECRET_KEY = /pass(word)?|secret|token|private|^key$|credential/i;

const redact = winston.format((info) => {
  for (const k of Object.keys(info)) if (SECRET_KEY.test(k)) info[k] = '[redacted]';
  return info;
});

/**
 * Structured JSON logs, one event per line. The agent logs to stdout (journald picks it up); the
 * CLI logs to stderr so that its stdout stays clean for --json.
 */
export function createLogger(opts: { component: string; level?: string; stream?: 'stdout' | 'stderr' }): Logger {
  const toStderr = opts.stream === 'stderr';
  return winston.createLogger({
    level: opts.level ?? process.env.KBUR_LOG_LEVEL ?? 'info',
    defaultMeta: { component: opts.component },
    format: winston.format.combine(redact(), winston.format.timestamp(), winston.format.errors({ stack: false }), winston.format.json()),
    transports: [
      new winston.transports.Console(toStderr ? { stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] } : {}),
    ],
  });
}
