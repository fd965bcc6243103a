// A one-line progress bar on a TTY; plain periodic lines otherwise (logs, CI).
export interface ProgressLine {
  fraction: number;
  text: string;
}

export class Progress {
  private lastPlain = 0;
  private drawn = false;
  constructor(private readonly stream: NodeJS.WriteStream = process.stderr, private readonly plainEveryMs = 5000) {}

  get isTTY(): boolean {
    return Boolean(this.stream.isTTY);
  }

  update(p: ProgressLine, force = false): void {
    if (this.isTTY) {
      const width = Math.max(10, Math.min(30, (this.stream.columns ?? 80) - p.text.length - 10));
      const full = Math.round(Math.max(0, Math.min(1, p.fraction)) * width);
      const bar = "█".repeat(full) + "░".repeat(width - full);
      const line = `${bar} ${(p.fraction * 100).toFixed(0).padStart(3)}% ${p.text}`;
      this.stream.write(`\r\x1b[2K${line.slice(0, (this.stream.columns ?? 200) - 1)}`);
      this.drawn = true;
    } else {
      const now = Date.now();
      if (force || now - this.lastPlain >= this.plainEveryMs) {
        this.lastPlain = now;
        this.stream.write(`[${(p.fraction * 100).toFixed(1)}%] ${p.text}\n`);
      }
    }
  }

  /** Prints a line above the bar. */
  log(line: string): void {
    if (this.isTTY && this.drawn) this.stream.write("\r\x1b[2K");
    process.stdout.write(line + "\n");
  }

  done(): void {
    if (this.isTTY && this.drawn) this.stream.write("\n");
    this.drawn = false;
  }
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return "?";
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}
