// Imported first by the CLI: libuv's thread pool (sharp's decoding runs on it) is sized when the
// first asynchronous I/O starts, so it must be set before anything else loads.
import * as os from "node:os";

if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(Math.max(4, 2 * os.cpus().length));
