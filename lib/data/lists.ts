// The official list format: one `relative/path label` a line (trainset.txt, testset.txt), paths
// relative to the data folder's images/. The label is the last whitespace-separated field, so
// paths may contain spaces (the official loader's `split()[0]` would cut them). CRLF and a UTF-8
// BOM are accepted; blank lines are ignored. Every other problem is an error naming file and line.

export interface ListEntry {
  /** the path as written in the list */
  path: string;
  label: number;
  /** 1-based line number in the list file */
  line: number;
}

export class ListFormatError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    const shown = problems.slice(0, 20).map((p) => `  ${p}`);
    if (problems.length > 20) shown.push(`  ... and ${problems.length - 20} more`);
    super(
      `c3gan data: ${problems.length} problem${problems.length === 1 ? "" : "s"} in ${file}:\n${shown.join("\n")}`,
    );
    this.name = "ListFormatError";
  }
}

const INTEGER = /^[+-]?\d+$/;

/**
 * Parses a list file's text. `numClasses`, when given, bounds the labels; labels must be integers
 * >= 0 in any case. Throws ListFormatError with every bad line, or when the list is empty.
 */
export function parseList(text: string, file: string, numClasses?: number): ListEntry[] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split(/\r\n|\n|\r/);
  const entries: ListEntry[] = [];
  const problems: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    if (raw.length === 0) continue;
    const line = i + 1;
    const m = /^(.*\S)\s+(\S+)$/.exec(raw);
    if (!m) {
      problems.push(`line ${line}: expected \`relative/path label\`, got ${JSON.stringify(raw)}`);
      continue;
    }
    const [, p, lab] = m;
    if (!INTEGER.test(lab)) {
      problems.push(`line ${line}: label ${JSON.stringify(lab)} is not an integer (path ${JSON.stringify(p)})`);
      continue;
    }
    const label = Number(lab);
    if (!Number.isSafeInteger(label) || label < 0) {
      problems.push(`line ${line}: label ${lab} is out of range (labels are 0-based)`);
      continue;
    }
    if (numClasses !== undefined && label >= numClasses) {
      problems.push(`line ${line}: label ${label} is out of range for ${numClasses} classes (0..${numClasses - 1})`);
      continue;
    }
    entries.push({ path: p, label, line });
  }
  if (problems.length > 0) throw new ListFormatError(file, problems);
  if (entries.length === 0) throw new ListFormatError(file, ["the list holds no images (empty file)"]);
  return entries;
}

/** The inverse of parseList: `path label` lines with a trailing newline. */
export function formatList(entries: ReadonlyArray<{ path: string; label: number }>): string {
  const out: string[] = [];
  for (const e of entries) {
    if (/[\r\n]/.test(e.path)) throw new Error(`c3gan data: path ${JSON.stringify(e.path)} holds a line break`);
    if (e.path !== e.path.trim()) throw new Error(`c3gan data: path ${JSON.stringify(e.path)} starts or ends with a space`);
    out.push(`${e.path} ${e.label}\n`);
  }
  return out.join("");
}
