// A minimal, safe unpickler for what torch.save writes for state dicts: pickle protocol 2 (and
// the protocol 3-5 opcodes such files may use: SHORT_BINUNICODE, FRAME, MEMOIZE, STACK_GLOBAL,
// ...). It builds plain values only: None, bools, ints (BigInt past 2^53), floats, strings,
// bytes, lists and tuples (arrays), dicts and OrderedDicts (Maps), and tensor descriptors.
// Nothing is ever called or imported: GLOBAL / STACK_GLOBAL resolve against a fixed allow-list
// of names (anything else is an Error naming it), REDUCE only runs the handful of torch
// rebuild functions re-implemented below, and INST / OBJ / NEWOBJ / EXT are always refused.
// Every size is bounded (stack, memo, strings, container elements, tensor elements).

export type TorchDType = "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Record<TorchDType, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
};

/** torch.<Name>Storage -> dtype (the typed-storage classes torch.save names in persistent ids). */
export const STORAGE_DTYPES: Record<string, TorchDType> = {
  FloatStorage: "float32", DoubleStorage: "float64", HalfStorage: "float16", BFloat16Storage: "bfloat16",
  LongStorage: "int64", IntStorage: "int32", ShortStorage: "int16", CharStorage: "int8", ByteStorage: "uint8",
  BoolStorage: "bool",
};

/** A name from GLOBAL / STACK_GLOBAL that is on the allow-list (a marker: it is never called). */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** One storage of the archive: its bytes are the entry `<archive>/data/<key>`. */
export class StorageRef {
  constructor(readonly key: string, readonly dtype: TorchDType, readonly location: string, readonly numel: number) {}
}

/** torch.device("cuda", 0) and the like, kept as its string form. */
export class TorchDevice {
  constructor(readonly type: string, readonly index: number | null) {}
  toString(): string {
    return this.index === null ? this.type : `${this.type}:${this.index}`;
  }
}

/** A tensor as torch._utils._rebuild_tensor_v2 describes it: a strided view of a storage. */
export class TorchTensor {
  constructor(
    readonly storage: StorageRef,
    /** in elements */
    readonly offset: number,
    readonly shape: number[],
    /** in elements */
    readonly stride: number[],
    readonly requiresGrad: boolean,
  ) {}
  get dtype(): TorchDType {
    return this.storage.dtype;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get storageKey(): string {
    return this.storage.key;
  }
}

export type DictKey = string | number | bigint | boolean | null;

export interface UnpickleLimits {
  /** values on the stack plus open marks */
  maxStack: number;
  maxMemo: number;
  /** bytes of one string / bytes object */
  maxString: number;
  /** items put in lists, tuples and dicts, over the whole pickle */
  maxElements: number;
  /** elements of all tensors together (views of one storage count each time) */
  maxTensorElements: number;
  /** bytes of one LONG1 / LONG4 integer */
  maxLongBytes: number;
}

export const DEFAULT_UNPICKLE_LIMITS: UnpickleLimits = {
  maxStack: 1_000_000,
  maxMemo: 10_000_000,
  maxString: 64 * 1024 * 1024,
  maxElements: 50_000_000,
  maxTensorElements: 4_000_000_000,
  maxLongBytes: 1024,
};

export interface UnpickleOptions {
  /** names the pickle in errors */
  source?: string;
  limits?: Partial<UnpickleLimits>;
}

const ALLOWED_GLOBALS = new Set([
  "collections.OrderedDict",
  "torch._utils._rebuild_tensor",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
  "torch._utils._rebuild_parameter_with_state",
  "torch._tensor._rebuild_from_type_v2",
  "torch.device",
  // only as _rebuild_from_type_v2's new_type: the plain classes whose rebuild we know
  "torch.Tensor",
  "torch.nn.parameter.Parameter",
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

const PLAIN_TENSOR_TYPES = new Set(["torch.Tensor", "torch.nn.parameter.Parameter"]);

export class UnpickleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnpickleError";
  }
}

function isDictKey(v: unknown): v is DictKey {
  return v === null || ["string", "number", "bigint", "boolean"].includes(typeof v);
}

function describe(v: unknown): string {
  if (v === null) return "None";
  if (v instanceof PyGlobal) return v.qualified;
  if (v instanceof TorchTensor) return "a tensor";
  if (v instanceof StorageRef) return "a storage";
  if (v instanceof Map) return "a dict";
  if (Array.isArray(v)) return Object.isFrozen(v) ? "a tuple" : "a list";
  if (v instanceof Uint8Array) return "bytes";
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v);
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  if (typeof v === "boolean") return v ? "True" : "False";
  return `a ${typeof v}`;
}

class Unpickler {
  private pos = 0;
  private readonly stack: unknown[] = [];
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, unknown>();
  private readonly storages = new Map<string, StorageRef>();
  private elements = 0;
  private tensorElements = 0;
  private readonly lim: UnpickleLimits;
  private readonly src: string;

  constructor(private readonly buf: Uint8Array, opts: UnpickleOptions) {
    this.lim = { ...DEFAULT_UNPICKLE_LIMITS, ...opts.limits };
    this.src = opts.source ?? "<pickle>";
  }

  private fail(what: string, at = this.pos): never {
    throw new UnpickleError(`unpickle ${this.src}: ${what} (at byte ${at})`);
  }

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.buf.length) {
      this.fail(`needs ${n} more bytes but the pickle ends at ${this.buf.length} (truncated?)`);
    }
  }

  private u8(): number {
    this.need(1);
    return this.buf[this.pos++];
  }

  private uint(n: 1 | 2 | 4): number {
    this.need(n);
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + this.buf[this.pos + i];
    this.pos += n;
    return v;
  }

  private uint64(): number {
    this.need(8);
    const lo = this.uint(4);
    const hi = this.uint(4);
    if (hi > 0x1fffff) this.fail("an 8-byte length beyond 2^53");
    return hi * 2 ** 32 + lo;
  }

  private bytes(n: number): Uint8Array {
    if (n > this.lim.maxString) this.fail(`a ${n}-byte string is longer than the ${this.lim.maxString} allowed`);
    this.need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  private line(): string {
    const start = this.pos;
    const max = Math.min(this.buf.length, start + 4096);
    for (let i = start; i < max; i++) {
      if (this.buf[i] === 0x0a) {
        this.pos = i + 1;
        return Buffer.from(this.buf.subarray(start, i)).toString("latin1");
      }
    }
    return this.fail("a text argument without its newline (truncated, or longer than 4096 bytes)");
  }

  private utf8(n: number): string {
    return Buffer.from(this.bytes(n)).toString("utf8");
  }

  private push(v: unknown): void {
    if (this.stack.length + this.marks.length >= this.lim.maxStack) this.fail(`stack deeper than ${this.lim.maxStack}`);
    this.stack.push(v);
  }

  private pop(op: string): unknown {
    const base = this.marks.length ? this.marks[this.marks.length - 1] : 0;
    if (this.stack.length <= base) this.fail(`${op} on an empty stack`);
    return this.stack.pop();
  }

  private top(op: string): unknown {
    const base = this.marks.length ? this.marks[this.marks.length - 1] : 0;
    if (this.stack.length <= base) this.fail(`${op} on an empty stack`);
    return this.stack[this.stack.length - 1];
  }

  private popMark(op: string): unknown[] {
    const m = this.marks.pop();
    if (m === undefined) this.fail(`${op} without a MARK`);
    return this.stack.splice(m);
  }

  private count(n: number): void {
    this.elements += n;
    if (this.elements > this.lim.maxElements) this.fail(`more than ${this.lim.maxElements} container elements`);
  }

  private tuple(items: unknown[]): unknown[] {
    this.count(items.length);
    return Object.freeze(items) as unknown[];
  }

  private memoPut(i: number, v: unknown): void {
    if (!this.memo.has(i) && this.memo.size >= this.lim.maxMemo) this.fail(`memo larger than ${this.lim.maxMemo}`);
    this.memo.set(i, v);
  }

  private memoGet(i: number): unknown {
    if (!this.memo.has(i)) this.fail(`GET of memo entry ${i}, which was never stored`);
    return this.memo.get(i);
  }

  private global(module: string, name: string, op: string): PyGlobal {
    const q = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(q)) {
      this.fail(`refusing ${op} ${q}: a state dict only needs OrderedDict, torch tensor rebuild functions and ` +
        "storage types, and nothing else is ever imported or run");
    }
    return new PyGlobal(module, name);
  }

  private dictSet(d: unknown, k: unknown, v: unknown, op: string): void {
    if (!(d instanceof Map)) this.fail(`${op} on ${describe(d)} (only dicts take items)`);
    if (!isDictKey(k)) this.fail(`${op}: a dict key of ${describe(k)} is not supported`);
    this.count(1);
    d.set(k, v);
  }

  private int(v: unknown, what: string, min = 0): number {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) this.fail(`${what} must be an integer >= ${min}, got ${describe(v)}`);
    return v;
  }

  private intTuple(v: unknown, what: string): number[] {
    if (!Array.isArray(v)) this.fail(`${what} must be a tuple of ints, got ${describe(v)}`);
    if (v.length > 64) this.fail(`${what} has ${v.length} dimensions`);
    return v.map((d, i) => this.int(d, `${what}[${i}]`));
  }

  private emptyOrNone(v: unknown, what: string): void {
    if (v === null) return;
    if (v instanceof Map && v.size === 0) return;
    this.fail(`${what} must be empty (hooks and tensor-subclass state are not supported), got ${describe(v)}`);
  }

  private storage(pid: unknown): StorageRef {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== "storage") {
      this.fail(`unsupported persistent id ${describe(pid)} (expected ('storage', type, key, location, numel))`);
    }
    const [, type, key, location, numel] = pid;
    if (!(type instanceof PyGlobal) || type.module !== "torch" || !(type.name in STORAGE_DTYPES)) {
      this.fail(`persistent id: ${describe(type)} is not a torch storage type`);
    }
    if (typeof key !== "string" || !/^[A-Za-z0-9_.-]{1,128}$/.test(key) || key.startsWith(".")) {
      this.fail(`persistent id: bad storage key ${describe(key)}`);
    }
    if (typeof location !== "string") this.fail(`persistent id: storage location must be a str, got ${describe(location)}`);
    const n = this.int(numel, "storage numel");
    const dtype = STORAGE_DTYPES[type.name];
    const seen = this.storages.get(key);
    if (seen) {
      if (seen.dtype !== dtype || seen.numel !== n) {
        this.fail(`storage ${key} is named twice with different types (${seen.dtype} x ${seen.numel}, ${dtype} x ${n})`);
      }
      return seen;
    }
    const ref = new StorageRef(key, dtype, location, n);
    this.storages.set(key, ref);
    return ref;
  }

  private rebuildTensor(args: unknown[], what: string): TorchTensor {
    const [storage, offsetV, sizeV, strideV, requiresGrad] = args;
    if (!(storage instanceof StorageRef)) this.fail(`${what}: the first argument must be a storage, got ${describe(storage)}`);
    const offset = this.int(offsetV, `${what}: storage offset`);
    const shape = this.intTuple(sizeV, `${what}: size`);
    const stride = this.intTuple(strideV, `${what}: stride`);
    if (stride.length !== shape.length) this.fail(`${what}: size ${JSON.stringify(shape)} and stride ${JSON.stringify(stride)} differ in length`);
    let numel = 1;
    let last = offset;
    for (let i = 0; i < shape.length; i++) {
      numel *= shape[i];
      last += (shape[i] - 1) * stride[i];
    }
    if (numel > 0 && last >= storage.numel) {
      this.fail(`${what}: a view of size ${JSON.stringify(shape)}, stride ${JSON.stringify(stride)}, offset ${offset} ` +
        `reaches element ${last} of a ${storage.numel}-element storage`);
    }
    this.tensorElements += numel;
    if (this.tensorElements > this.lim.maxTensorElements) this.fail(`tensors hold more than ${this.lim.maxTensorElements} elements`);
    if (typeof requiresGrad !== "boolean") this.fail(`${what}: requires_grad must be a bool, got ${describe(requiresGrad)}`);
    return new TorchTensor(storage, offset, shape, stride, requiresGrad);
  }

  private withGrad(t: unknown, requiresGrad: unknown, what: string): TorchTensor {
    if (!(t instanceof TorchTensor)) this.fail(`${what}: data must be a tensor, got ${describe(t)}`);
    if (typeof requiresGrad !== "boolean") this.fail(`${what}: requires_grad must be a bool`);
    return new TorchTensor(t.storage, t.offset, t.shape, t.stride, requiresGrad);
  }

  /** The only calls there are: re-implementations of the allow-listed functions. */
  private call(fn: unknown, args: unknown): unknown {
    if (!(fn instanceof PyGlobal)) this.fail(`REDUCE on ${describe(fn)}: only allow-listed functions can be called`);
    if (!Array.isArray(args)) this.fail(`REDUCE ${fn.qualified}: arguments must be a tuple, got ${describe(args)}`);
    const q = fn.qualified;
    const arity = (lo: number, hi = lo): void => {
      if (args.length < lo || args.length > hi) this.fail(`${q} takes ${lo === hi ? lo : `${lo}-${hi}`} arguments, got ${args.length}`);
    };
    switch (q) {
      case "collections.OrderedDict": {
        arity(0, 1);
        const d = new Map<DictKey, unknown>();
        if (args.length === 1) {
          if (!Array.isArray(args[0])) this.fail(`OrderedDict(${describe(args[0])}) is not supported`);
          for (const kv of args[0]) {
            if (!Array.isArray(kv) || kv.length !== 2) this.fail("OrderedDict: items must be (key, value) pairs");
            this.dictSet(d, kv[0], kv[1], "OrderedDict");
          }
        }
        return d;
      }
      case "torch._utils._rebuild_tensor":
        arity(4);
        return this.rebuildTensor([...args, false], q);
      case "torch._utils._rebuild_tensor_v2":
        // (storage, offset, size, stride, requires_grad, backward_hooks[, metadata])
        arity(6, 7);
        this.emptyOrNone(args[5], `${q}: backward_hooks`);
        if (args.length === 7 && args[6] !== null && !(args[6] instanceof Map)) this.fail(`${q}: metadata must be a dict`);
        return this.rebuildTensor(args, q);
      case "torch._utils._rebuild_parameter":
        arity(3);
        this.emptyOrNone(args[2], `${q}: backward_hooks`);
        return this.withGrad(args[0], args[1], q);
      case "torch._utils._rebuild_parameter_with_state":
        arity(4);
        this.emptyOrNone(args[2], `${q}: backward_hooks`);
        this.emptyOrNone(args[3], `${q}: state`);
        return this.withGrad(args[0], args[1], q);
      case "torch._tensor._rebuild_from_type_v2": {
        // (func, new_type, args, state): only plain Tensor / Parameter without extra state
        arity(4);
        const [func, newType, inner, state] = args;
        if (!(newType instanceof PyGlobal) || !PLAIN_TENSOR_TYPES.has(newType.qualified)) {
          this.fail(`${q}: tensor type ${describe(newType)} is not supported`);
        }
        if (!(func instanceof PyGlobal) || !func.qualified.startsWith("torch._utils._rebuild_")) {
          this.fail(`${q}: rebuild function ${describe(func)} is not supported`);
        }
        this.emptyOrNone(state, `${q}: state`);
        const t = this.call(func, inner);
        if (!(t instanceof TorchTensor)) this.fail(`${q}: ${func.qualified} did not make a tensor`);
        return t;
      }
      case "torch.device": {
        arity(1, 2);
        const [s, idx] = args;
        if (typeof s !== "string") this.fail(`torch.device(${describe(s)}) is not supported`);
        if (args.length === 2) return new TorchDevice(s, this.int(idx, "torch.device index"));
        const m = /^([a-z]+)(?::(\d+))?$/.exec(s);
        if (!m) this.fail(`torch.device(${JSON.stringify(s)}) is not a device string`);
        return new TorchDevice(m[1], m[2] === undefined ? null : Number(m[2]));
      }
      default:
        return this.fail(`refusing to call ${q}`);
    }
  }

  private build(): void {
    const state = this.pop("BUILD");
    const target = this.top("BUILD");
    // OrderedDict.__dict__ of a state_dict() holds `_metadata` (per-module versions): attributes
    // a plain mapping does not need, so they are checked for shape and dropped
    const attrs = Array.isArray(state) && state.length === 2 ? state[0] : state;
    const slots = Array.isArray(state) && state.length === 2 ? state[1] : null;
    if (target instanceof Map && (attrs === null || attrs instanceof Map) && (slots === null || slots instanceof Map)) {
      for (const k of (attrs as Map<unknown, unknown> | null)?.keys() ?? []) {
        if (typeof k !== "string") this.fail("BUILD: attribute names must be strings");
      }
      return;
    }
    this.fail(`refusing BUILD (__setstate__) on ${describe(target)} with ${describe(state)}`);
  }

  private long(n: number): number | bigint {
    if (n > this.lim.maxLongBytes) this.fail(`a ${n}-byte integer is longer than the ${this.lim.maxLongBytes} allowed`);
    const b = this.bytes(n);
    if (n === 0) return 0;
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private textInt(s: string): number | bigint {
    const t = s.endsWith("L") ? s.slice(0, -1) : s;
    if (!/^[+-]?\d+$/.test(t)) this.fail(`bad integer literal ${JSON.stringify(s)}`);
    const v = BigInt(t);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  run(): unknown {
    const buf = this.buf;
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      switch (op) {
        case 0x80: { // PROTO
          const p = this.u8();
          if (p > 5) this.fail(`pickle protocol ${p} is newer than 5`, at);
          break;
        }
        case 0x95: { // FRAME: framing is only a read-ahead hint
          const n = this.uint64();
          if (this.pos + n > buf.length) this.fail(`a ${n}-byte frame runs past the end (truncated?)`, at);
          break;
        }
        case 0x2e: { // STOP
          if (this.marks.length) this.fail("STOP with an open MARK", at);
          if (this.stack.length !== 1) this.fail(`STOP with ${this.stack.length} values on the stack (expected 1)`, at);
          return this.stack[0];
        }
        case 0x28: // MARK
          if (this.stack.length + this.marks.length >= this.lim.maxStack) this.fail(`stack deeper than ${this.lim.maxStack}`, at);
          this.marks.push(this.stack.length);
          break;
        case 0x30: this.pop("POP"); break;
        case 0x31: this.popMark("POP_MARK"); break;
        case 0x32: this.push(this.top("DUP")); break;

        case 0x4e: this.push(null); break; // NONE
        case 0x88: this.push(true); break; // NEWTRUE
        case 0x89: this.push(false); break; // NEWFALSE
        case 0x4b: this.push(this.uint(1)); break; // BININT1
        case 0x4d: this.push(this.uint(2)); break; // BININT2
        case 0x4a: this.push(this.uint(4) | 0); break; // BININT (signed)
        case 0x8a: this.push(this.long(this.u8())); break; // LONG1
        case 0x8b: { // LONG4
          const n = this.uint(4);
          this.push(this.long(n));
          break;
        }
        case 0x49: { // INT (text; protocol 0 writes bools as 01 / 00)
          const s = this.line();
          this.push(s === "01" ? true : s === "00" ? false : this.textInt(s));
          break;
        }
        case 0x4c: this.push(this.textInt(this.line())); break; // LONG (text)
        case 0x47: { // BINFLOAT: big-endian double
          this.need(8);
          this.push(Buffer.from(buf.subarray(this.pos, this.pos + 8)).readDoubleBE(0));
          this.pos += 8;
          break;
        }
        case 0x46: { // FLOAT (text, as Python's repr writes it)
          const s = this.line().trim();
          if (/^[+-]?inf$/i.test(s)) this.push(s.startsWith("-") ? -Infinity : Infinity);
          else if (/^[+-]?nan$/i.test(s)) this.push(NaN);
          else if (/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(s)) this.push(Number(s));
          else this.fail(`bad float literal ${JSON.stringify(s)}`, at);
          break;
        }

        case 0x58: this.push(this.utf8(this.uint(4))); break; // BINUNICODE
        case 0x8c: this.push(this.utf8(this.uint(1))); break; // SHORT_BINUNICODE
        case 0x8d: this.push(this.utf8(this.uint64())); break; // BINUNICODE8
        // Python 2 str: Python 3 reads it as text (latin-1 keeps every byte)
        case 0x54: this.push(Buffer.from(this.bytes(this.uint(4))).toString("latin1")); break; // BINSTRING
        case 0x55: this.push(Buffer.from(this.bytes(this.uint(1))).toString("latin1")); break; // SHORT_BINSTRING
        case 0x42: this.push(Uint8Array.from(this.bytes(this.uint(4)))); break; // BINBYTES
        case 0x43: this.push(Uint8Array.from(this.bytes(this.uint(1)))); break; // SHORT_BINBYTES
        case 0x8e: this.push(Uint8Array.from(this.bytes(this.uint64()))); break; // BINBYTES8
        case 0x96: this.push(Uint8Array.from(this.bytes(this.uint64()))); break; // BYTEARRAY8

        case 0x29: this.push(this.tuple([])); break; // EMPTY_TUPLE
        case 0x85: this.push(this.tuple([this.pop("TUPLE1")])); break;
        case 0x86: { // TUPLE2
          const b = this.pop("TUPLE2");
          const a = this.pop("TUPLE2");
          this.push(this.tuple([a, b]));
          break;
        }
        case 0x87: { // TUPLE3
          const c = this.pop("TUPLE3");
          const b = this.pop("TUPLE3");
          const a = this.pop("TUPLE3");
          this.push(this.tuple([a, b, c]));
          break;
        }
        case 0x74: this.push(this.tuple(this.popMark("TUPLE"))); break;
        case 0x5d: this.push([]); break; // EMPTY_LIST
        case 0x6c: { // LIST
          const items = this.popMark("LIST");
          this.count(items.length);
          this.push(items);
          break;
        }
        case 0x61: { // APPEND
          const v = this.pop("APPEND");
          const l = this.top("APPEND");
          if (!Array.isArray(l) || Object.isFrozen(l)) this.fail(`APPEND to ${describe(l)}`, at);
          this.count(1);
          l.push(v);
          break;
        }
        case 0x65: { // APPENDS
          const items = this.popMark("APPENDS");
          const l = this.top("APPENDS");
          if (!Array.isArray(l) || Object.isFrozen(l)) this.fail(`APPENDS to ${describe(l)}`, at);
          this.count(items.length);
          for (const v of items) l.push(v);
          break;
        }
        case 0x7d: this.push(new Map()); break; // EMPTY_DICT
        case 0x64: { // DICT
          const items = this.popMark("DICT");
          if (items.length % 2) this.fail("DICT with an odd number of items", at);
          const d = new Map<DictKey, unknown>();
          for (let i = 0; i < items.length; i += 2) this.dictSet(d, items[i], items[i + 1], "DICT");
          this.push(d);
          break;
        }
        case 0x73: { // SETITEM
          const v = this.pop("SETITEM");
          const k = this.pop("SETITEM");
          this.dictSet(this.top("SETITEM"), k, v, "SETITEM");
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark("SETITEMS");
          if (items.length % 2) this.fail("SETITEMS with an odd number of items", at);
          const d = this.top("SETITEMS");
          for (let i = 0; i < items.length; i += 2) this.dictSet(d, items[i], items[i + 1], "SETITEMS");
          break;
        }

        case 0x71: this.memoPut(this.uint(1), this.top("BINPUT")); break; // BINPUT
        case 0x72: this.memoPut(this.uint(4), this.top("LONG_BINPUT")); break; // LONG_BINPUT
        case 0x70: this.memoPut(this.int(this.textInt(this.line()), "PUT index"), this.top("PUT")); break; // PUT
        case 0x94: this.memoPut(this.memo.size, this.top("MEMOIZE")); break; // MEMOIZE
        case 0x68: this.push(this.memoGet(this.uint(1))); break; // BINGET
        case 0x6a: this.push(this.memoGet(this.uint(4))); break; // LONG_BINGET
        case 0x67: this.push(this.memoGet(this.int(this.textInt(this.line()), "GET index"))); break; // GET

        case 0x63: { // GLOBAL
          const module = this.line();
          const name = this.line();
          this.push(this.global(module, name, "GLOBAL"));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop("STACK_GLOBAL");
          const module = this.pop("STACK_GLOBAL");
          if (typeof module !== "string" || typeof name !== "string") this.fail("STACK_GLOBAL needs two strings", at);
          this.push(this.global(module, name, "STACK_GLOBAL"));
          break;
        }
        case 0x52: { // REDUCE
          const args = this.pop("REDUCE");
          const fn = this.pop("REDUCE");
          this.push(this.call(fn, args));
          break;
        }
        case 0x62: this.build(); break; // BUILD
        case 0x51: this.push(this.storage(this.pop("BINPERSID"))); break; // BINPERSID
        case 0x50: this.fail(`refusing PERSID ${JSON.stringify(this.line())} (torch writes BINPERSID tuples)`, at); break;

        case 0x69: { // INST: imports and calls module.name
          const module = this.line();
          const name = this.line();
          this.fail(`refusing INST ${module}.${name}: pickles may not create objects`, at);
          break;
        }
        case 0x6f: { // OBJ: calls the class below the mark
          const items = this.popMark("OBJ");
          this.fail(`refusing OBJ ${items.length ? describe(items[0]) : "(nothing)"}: pickles may not create objects`, at);
          break;
        }
        case 0x81: case 0x92: { // NEWOBJ, NEWOBJ_EX: cls.__new__(cls, ...)
          const name = op === 0x81 ? "NEWOBJ" : "NEWOBJ_EX";
          this.pop(name);
          if (op === 0x92) this.pop(name);
          this.fail(`refusing ${name} ${describe(this.pop(name))}: pickles may not create objects`, at);
          break;
        }
        case 0x82: case 0x83: case 0x84:
          this.fail("refusing EXT (copyreg extension codes name arbitrary objects)", at);
          break;
        case 0x97: case 0x98:
          this.fail("refusing out-of-band buffers (NEXT_BUFFER / READONLY_BUFFER)", at);
          break;
        default:
          this.fail(`unsupported opcode 0x${op.toString(16).padStart(2, "0")}` +
            (op >= 0x20 && op < 0x7f ? ` ('${String.fromCharCode(op)}')` : ""), at);
      }
    }
  }
}

/** Unpickles `data` under the rules above; throws an UnpickleError naming what it refused. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions = {}): unknown {
  return new Unpickler(data, opts).run();
}

/** Every storage reachable from a value (each once), for resolving against the archive. */
export function storagesOf(root: unknown): StorageRef[] {
  const out = new Set<StorageRef>();
  const seen = new Set<object>();
  const todo: unknown[] = [root];
  while (todo.length) {
    const v = todo.pop();
    if (v === null || typeof v !== "object" || seen.has(v)) continue;
    seen.add(v);
    if (v instanceof TorchTensor) out.add(v.storage);
    else if (v instanceof StorageRef) out.add(v);
    else if (v instanceof Map) for (const x of v.values()) todo.push(x);
    else if (Array.isArray(v)) for (const x of v) todo.push(x);
  }
  return [...out];
}
