// Using c3gan from another Node program: train a small model on the built-in generated data,
// then load the best checkpoint, generate images per cluster and cluster them back.
// Run: node examples/library.js [saveDir]
const path = require("node:path");
const { train, loadModel } = require("c3gan");

async function main() {
  const saveDir = process.argv[2] || "runs/library-example";
  const result = await train(
    {
      name: "library-example",
      dataset: { format: "synthetic", numClasses: 3, perClass: 32, testPerClass: 8, seed: 1 },
      numGtClasses: 3, over: 1, batchSize: 16, maxEpoch: 2, evalInterval: 1,
      imageSize: 32, channels: 3, ngf: 32, ndf: 8, zDim: 8, czDim: 4,
      perturbation: "w", device: "cpu", workers: 0, saveDir,
    },
    { onProgress: (p) => p.stepInEpoch === p.stepsPerEpoch && console.log(`epoch ${p.epoch + 1} done, D ${p.d.total.toFixed(3)}`) },
  );
  console.log(`trained ${result.steps} steps; best ACC ${result.best.acc.toFixed(3)}`);

  const model = await loadModel(path.join(result.saveDir, "best_acc.safetensors"));
  try {
    const generated = model.generate({ clusters: [0, 1, 2], perCluster: 4, seed: 1 });
    // cluster the generated images back: a well-trained model gives each its own cluster
    for (const g of generated) {
      const report = await model.cluster({ images: g.final.data, shape: g.final.shape });
      console.log(`generated for cluster ${g.cluster} -> assigned ${report.assignments.map((a) => a.cluster).join(" ")}`);
    }
  } finally {
    model.dispose();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
