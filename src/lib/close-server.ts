import type http from 'node:http';

/**
 * Stops an HTTP server without waiting out its keep-alive timeout: Node's `close()` ends only
 * the connections idle at that moment, and a keep-alive connection whose request was still
 * running stays open for `keepAliveTimeout` (65 s here) after its response. This ends every
 * connection as soon as it is idle, and after `graceMs` ends the rest (a slow download).
 */
export function closeServer(server: http.Server, graceMs = 5000): Promise<void> {
  return new Promise<void>((resolve) => {
    const idle = setInterval(() => server.closeIdleConnections(), 50);
    const hard = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearInterval(idle);
      clearTimeout(hard);
      resolve();
    });
    server.closeIdleConnections();
  });
}
