#!/usr/bin/env node
// The c3gan command line: train, eval, prepare, info (and, as they land, cluster, generate, bench).
import "../lib/cli/env";
import { Command } from "commander";
import * as path from "node:path";
import { formatDuration, Progress } from "../lib/cli/progress";
import { addonFilePath, native, NativeAddon } from "../lib/native";
import { C3Config, describeConfig, loadConfig, parseConfig } from "../lib/train/config";
import { DEFAULT_CONFIG } from "../lib/train/defaults";
import { train, scoreModel, specFromConfig } from "../lib/train/trainer";
import { resolveDevice } from "../lib/device";
import { describeUsage } from "../lib/eval";
import { checkpointConfig } from "../lib/api/model";
import { VERSION, loadModel } from "../lib/train/checkpoint";
import { C3GAN } from "../lib/model/c3gan";
import { Generator } from "../lib/tensor";
import { openTrainingData } from "../lib/train/data-source";
import { registerBenchCommand } from "../lib/bench/command";
import { registerPrepareCommand } from "../lib/data/cli";
import { registerUseCommands } from "../lib/cli/use-commands";
import { importCommand } from "../lib/train/import";
import { configureSharp } from "../lib/data/decode";

function fail(e: unknown): never {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`c3gan: ${msg.replace(/^c3gan(:\s*|\s+)/, "")}\n`);
  if (process.env.C3GAN_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  process.exit(1);
}

// `c3gan info`'s line on the tensor-core layouts the kernels assume, as the device answered
function tensorCoreVerdict(N: NativeAddon): string {
  let p: ReturnType<NativeAddon["cudaLayoutProbe"]>;
  try {
    p = N.cudaLayoutProbe();
  } catch (e) {
    return `the layout probe failed (please report): ${(e as Error).message}`;
  }
  const wrong = [p.mma, p.wgmma].filter((s) => s !== "");
  if (wrong.length > 0) {
    // the products ask the same before they run and then avoid the instruction
    const instead = [p.mma ? "TF32 products run in exact fp32" : "", p.wgmma ? "the wgmma pipeline gives way to the register one" : ""]
      .filter(Boolean).join(", ");
    return `NOT as the kernels assume (please report; results stay right: ${instead}): ${wrong.join("; ")}`;
  }
  return `layouts as the kernels assume (mma.sync${p.wgmmaRan ? ", wgmma" : "; wgmma: no sm_90a code here"})`;
}

function configFrom(opts: { config?: string; device?: string; saveDir?: string; epochs?: string }): C3Config {
  const cfg = opts.config ? loadConfig(opts.config) : parseConfig(DEFAULT_CONFIG, "built-in demo config");
  const overrides: Partial<C3Config> = {};
  if (opts.device) overrides.device = opts.device as C3Config["device"];
  if (opts.saveDir) overrides.saveDir = opts.saveDir;
  if (opts.epochs) overrides.maxEpoch = Number(opts.epochs);
  // re-validate so overrides get the same checks as config fields
  return Object.keys(overrides).length ? parseConfig({ ...cfg, ...overrides }, opts.config ?? "built-in demo config") : cfg;
}

function withDevice(cfg: C3Config, device: string | undefined): C3Config {
  return device ? parseConfig({ ...cfg, device }, "--device") : cfg;
}

// the command owns its process: sharp tuned for the loaders (process-wide, so not the library's call)
configureSharp();

const program = new Command();
program.name("c3gan").description("C3-GAN: fine-grained clustering with GANs, on native CPU/CUDA kernels").version(VERSION);

program
  .command("train")
  .description("train C3-GAN from a JSON config (without --config: the built-in demo on generated images)")
  .option("-c, --config <file>", "config JSON (see examples/)")
  .option("-d, --device <device>", "override the config's device: cpu, cuda, cuda:N or auto")
  .option("--resume", "continue from <saveDir>/last.safetensors")
  .option("--save-dir <dir>", "override the config's saveDir")
  .option("--epochs <n>", "override maxEpoch")
  .action(async (opts) => {
    const cfg = configFrom(opts);
    console.log(describeConfig(cfg));
    const bar = new Progress();
    const ac = new AbortController();
    const stop = () => {
      bar.log("interrupted: stopping after this step (the last epoch's checkpoint stays for --resume)");
      ac.abort();
    };
    process.once("SIGINT", stop);
    const r = await train(cfg, {
      resume: Boolean(opts.resume),
      signal: ac.signal,
      log: (l) => bar.log(l),
      onProgress: (p) => {
        const total = p.maxEpoch * p.stepsPerEpoch;
        const done = p.epoch * p.stepsPerEpoch + p.stepInEpoch;
        bar.update({
          fraction: done / total,
          text: `epoch ${p.epoch + 1}/${p.maxEpoch} step ${p.stepInEpoch}/${p.stepsPerEpoch} ` +
            `${p.itPerSec.toFixed(2)} it/s ETA ${formatDuration(p.etaSec)} D ${p.d.total.toFixed(3)} G ${p.g.total.toFixed(3)}`,
        });
      },
    });
    bar.done();
    process.removeListener("SIGINT", stop);
    console.log(`device ${r.device}; ${r.epochs} epoch${r.epochs === 1 ? "" : "s"}, ${r.steps} steps; run folder ${path.resolve(r.saveDir)}`);
    const l = r.last;
    if (l && l.acc !== null) console.log(`final: ACC ${l.acc.toFixed(4)}  NMI ${l.nmiOfficial!.toFixed(4)} (official formula), ${l.nmiSklearn!.toFixed(4)} (sklearn)  ARI ${l.ari!.toFixed(4)}`);
    else if (l?.usage) console.log(`final: ${describeUsage(l.usage)} (images without labels: no ACC / NMI)`);
    if (r.best) console.log(`best:  ACC ${r.best.acc!.toFixed(4)}  NMI ${r.best.nmiOfficial!.toFixed(4)} at epoch ${r.best.epoch + 1}`);
    if (r.aborted) process.exitCode = 130;
  });

program
  .command("eval")
  .description("cluster the config's test set with a checkpoint and print ACC / NMI (with labels) and how the images spread over the clusters")
  .option("-c, --config <file>", "config JSON (default: the one stored in the checkpoint)")
  .requiredOption("--checkpoint <file>", "model .safetensors")
  .option("-d, --device <device>", "override the config's device: cpu, cuda, cuda:N or auto")
  .option("--json", "print JSON")
  .action(async (opts) => {
    const cfg = opts.config ? configFrom(opts) : withDevice(checkpointConfig(opts.checkpoint), opts.device);
    const device = resolveDevice(cfg.device);
    // every weight and buffer comes from the checkpoint (loadModel refuses a missing one): no
    // official init, which takes seconds at the CUB config (orthogonal weights)
    const model = new C3GAN(specFromConfig(cfg), device, new Generator(0n), { officialInit: false });
    loadModel(opts.checkpoint, model);
    const data = await openTrainingData(cfg);
    try {
      const { metrics: r, usage } = await scoreModel(model, data, cfg);
      const out = {
        acc: r?.acc ?? null, nmiOfficial: r?.nmiOfficial ?? null, nmiSklearn: r?.nmiSklearn ?? null, ari: r?.ari ?? null,
        // the class the ACC matching gave each cluster (the official OVER folding: `over` clusters a class)
        clusterToClass: r ? Array.from(r.clusterToClass) : null, images: usage.images, usage,
      };
      if (opts.json) console.log(JSON.stringify(out));
      else if (r) console.log(`ACC ${r.acc.toFixed(4)}  NMI ${r.nmiOfficial.toFixed(4)} (official formula)  ${r.nmiSklearn.toFixed(4)} (sklearn, arithmetic mean)  ARI ${r.ari.toFixed(4)}  on ${out.images} images`);
      else console.log(`${describeUsage(usage)} (images without labels: no ACC / NMI)`);
    } finally {
      await data.close();
      model.dispose();
    }
  });

program
  .command("info")
  .description("version, native addon, CPU threads and kernels, CUDA status")
  .action(() => {
    const N = native();
    // C3GAN_ADDON's file, or the one node-gyp-build chose: a prebuild (prebuilds/<platform>-<arch>/) or a local build
    const file = addonFilePath();
    console.log(`c3gan ${VERSION}\nnative addon ${N.version}\naddon ${file}\nthreads ${N.numThreads()}\n` +
      `cpu: ${N.cpuFeatures()}; gemm kernel ${N.gemmKernel()}\ncuda: ${N.cudaStatus()}\n` +
      `cuda code: ${N.cudaBuild()}` +
      (N.cudaAvailable() ? `; math ${N.cudaMath()}, tile pipeline ${N.cudaTile()}, convs ${N.cudaConv()}` : "") +
      (N.cudaAvailable() ? `\ntensor cores: ${tensorCoreVerdict(N)}` : "") +
      `\ncudnn: ${N.cudnnStatus()}` +
      // several GPUs: which one the backend uses, and how to choose another
      (N.cudaDevices().length > 1 ? `\ncuda devices (in use: ${N.cudaDevice()}; choose with "device": "cuda:N" or C3GAN_CUDA_DEVICE):` +
        N.cudaDevices().map((d) => `\n  ${d}`).join("") : ""));
  });

registerBenchCommand(program);

program
  .command("import")
  .description("convert an official naver-ai/c3-gan checkpoint (.pt) to a c3gan .safetensors model")
  .argument("<checkpoint>", "official .pt (torch.save zip format)")
  .requiredOption("-c, --config <file>", "config JSON with the checkpoint's sizes (numGtClasses, over, imageSize, ...)")
  .option("-o, --out <file>", "output .safetensors (default: <checkpoint>.safetensors)")
  .action((pt: string, opts: { out?: string; config: string }) => console.log(importCommand(pt, opts)));

registerPrepareCommand(program);
registerUseCommands(program);

async function main(): Promise<void> {
  await program.parseAsync(process.argv);
}

main().catch(fail);
