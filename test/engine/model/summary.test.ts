import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildResNet50, type ModelConfig } from '../../../engine/model/resnet50.js';
import { renderSummaryText, summaryAtDepth } from '../../../common/summary-table.js';
import { summarize } from '../../../engine/model/summary.js';
import { useTestBackend } from '../../helpers/tf.js';

const summaryOf = (config: ModelConfig, depth: number) => {
  const resnet = buildResNet50(config);
  try {
    return summarize(resnet, depth);
  } finally {
    resnet.dispose();
  }
};

// torchinfo.summary(torchvision.models.resnet50(), (1, 3, 224, 224), depth=2,
//                   row_settings=("depth", "var_names")), run against torchvision 0.14.
const TORCHINFO_DEPTH2: Array<[string, string, number[], number | null]> = [
  ['conv1', 'Conv2d', [1, 64, 112, 112], 9408],
  ['bn1', 'BatchNorm2d', [1, 64, 112, 112], 128],
  ['relu', 'ReLU', [1, 64, 112, 112], null],
  ['maxpool', 'MaxPool2d', [1, 64, 56, 56], null],
  ['layer1', 'Sequential', [1, 256, 56, 56], null],
  ['layer1.0', 'Bottleneck', [1, 256, 56, 56], 75008],
  ['layer1.1', 'Bottleneck', [1, 256, 56, 56], 70400],
  ['layer1.2', 'Bottleneck', [1, 256, 56, 56], 70400],
  ['layer2', 'Sequential', [1, 512, 28, 28], null],
  ['layer2.0', 'Bottleneck', [1, 512, 28, 28], 379392],
  ['layer2.1', 'Bottleneck', [1, 512, 28, 28], 280064],
  ['layer2.2', 'Bottleneck', [1, 512, 28, 28], 280064],
  ['layer2.3', 'Bottleneck', [1, 512, 28, 28], 280064],
  ['layer3', 'Sequential', [1, 1024, 14, 14], null],
  ['layer3.0', 'Bottleneck', [1, 1024, 14, 14], 1512448],
  ...[1, 2, 3, 4, 5].map((i) => [`layer3.${i}`, 'Bottleneck', [1, 1024, 14, 14], 1117184] as [string, string, number[], number]),
  ['layer4', 'Sequential', [1, 2048, 7, 7], null],
  ['layer4.0', 'Bottleneck', [1, 2048, 7, 7], 6039552],
  ['layer4.1', 'Bottleneck', [1, 2048, 7, 7], 4462592],
  ['layer4.2', 'Bottleneck', [1, 2048, 7, 7], 4462592],
  ['avgpool', 'AdaptiveAvgPool2d', [1, 2048, 1, 1], null],
  ['fc', 'Linear', [1, 1000], 2049000],
];

describe('model summary (torchinfo equivalent)', () => {
  before(async () => {
    await useTestBackend();
  });

  it('matches torchinfo row by row for the pretrained model at 224, depth 2', () => {
    const summary = summaryOf({ mode: 'pretrained', numClasses: 1000, inputSize: 224 }, 2);
    const [root, ...rows] = summary.rows;
    assert.deepEqual([root.type, root.outputShape, root.showsParams], ['ResNet', [1, 1000], false]);
    assert.deepEqual(
      rows.map((r) => [r.name, r.type, r.outputShape, r.showsParams ? r.params : null]),
      TORCHINFO_DEPTH2,
    );
    assert.deepEqual(rows.map((r) => r.depthIndex).slice(0, 7), ['1-1', '1-2', '1-3', '1-4', '1-5', '2-1', '2-2']);
    assert.equal(rows.at(-1)!.depthIndex, '1-10');
    assert.equal(summary.totals.totalParams, 25_557_032);
    assert.equal((summary.totals.multAdds / 1e9).toFixed(2), '4.09');
    assert.equal(summary.totals.inputSizeMB, 0.6);
    assert.equal(summary.totals.forwardBackwardPassSizeMB, 177.83);
    assert.equal(summary.totals.paramsSizeMB, 102.23);
    assert.equal(summary.totals.estimatedTotalSizeMB, 280.66);
  });

  it('counts the new head and freezes the backbone in feature_extraction', () => {
    const { totals } = summaryOf({ mode: 'feature_extraction', numClasses: 5, inputSize: 224 }, 1);
    assert.equal(totals.totalParams, 23_518_277);
    assert.equal(totals.trainableParams, 10_245);
    assert.equal(totals.nonTrainableParams, 23_508_032);
  });

  it('counts frozen BatchNorm parameters as non-trainable in fine_tuning from conv1', () => {
    const config: ModelConfig = {
      mode: 'fine_tuning',
      numClasses: 5,
      inputSize: 224,
      fineTuning: { trainableFrom: 'conv1', freezeBatchNorm: true },
    };
    const summary = summaryOf(config, 3);
    assert.equal(summary.totals.totalParams, 24_689_733);
    assert.equal(summary.totals.nonTrainableParams, 53_120);
    const head = summary.rows.filter((r) => r.name.startsWith('fc.'));
    assert.deepEqual(
      head.map((r) => [r.varName, r.type]),
      [
        ['0', 'Linear'],
        ['1', 'ReLU'],
        ['2', 'Dropout'],
        ['3', 'Linear'],
        ['4', 'ReLU'],
        ['5', 'Dropout'],
        ['6', 'Linear'],
      ],
    );
    const block = summary.rows.filter((r) => r.name.startsWith('layer1.0.') && r.depth === 3);
    assert.deepEqual(
      block.map((r) => r.varName),
      ['conv1', 'bn1', 'relu', 'conv2', 'bn2', 'relu', 'conv3', 'bn3', 'downsample', 'relu'],
    );
    const text = renderSummaryText(summary);
    assert.match(text, /│ {4}│ {4}└─BatchNorm2d \(bn1\): 3-2\s+\[1, 64, 56, 56\]\s+\(128\)/);
    assert.match(text, /│ {4}│ {4}└─Conv2d \(conv1\): 3-1\s+\[1, 64, 56, 56\]\s+4,096/);
    assert.match(text, /Non-trainable params: 53,120/);
  });

  it('shows only trainable stages as trainable with trainableFrom layer4', () => {
    const config: ModelConfig = {
      mode: 'fine_tuning',
      numClasses: 5,
      inputSize: 64,
      fineTuning: { trainableFrom: 'layer4', freezeBatchNorm: true },
    };
    const rows = summaryOf(config, 1).rows;
    const trainable = rows.filter((r) => r.trainableParams > 0).map((r) => r.name);
    assert.deepEqual(trainable, ['', 'layer4', 'fc']);
  });

  it("renders the seed's pretrained table: nothing frozen, so every count is trainable", () => {
    const text = renderSummaryText(summaryOf({ mode: 'pretrained', numClasses: 1000, inputSize: 224 }, 1));
    for (const line of [
      'Total params: 25,557,032',
      'Trainable params: 25,557,032',
      'Non-trainable params: 0',
      'Total mult-adds (G): 4.09',
      'Input size (MB): 0.60',
      'Forward/backward pass size (MB): 177.83',
      'Params size (MB): 102.23',
      'Estimated Total Size (MB): 280.66',
    ]) {
      assert.ok(text.includes(line), `missing "${line}"`);
    }
    assert.match(text, /^├─Linear \(fc\): 1-10\s+\[1, 1000\]\s+2,049,000$/m);
    assert.doesNotMatch(text, /\(\d[\d,]*\)$/m, 'no parenthesised (frozen) counts');
  });

  it('keeps the topology at every input size from 32 to 512 and rejects others', () => {
    // torchvision's output sizes: each stride-2 stage gives ceil(size / 2).
    for (const [inputSize, final] of [
      [32, 1],
      [96, 3],
      [112, 4],
      [512, 16],
    ]) {
      const summary = summaryOf({ mode: 'pretrained', numClasses: 1000, inputSize }, 1);
      assert.equal(summary.totals.totalParams, 25_557_032);
      assert.deepEqual(summary.rows.find((r) => r.name === 'layer4')!.outputShape, [1, 2048, final, final]);
      assert.deepEqual(summary.rows.find((r) => r.name === 'avgpool')!.outputShape, [1, 2048, 1, 1]);
    }
    for (const inputSize of [0, 16, 40, 544]) {
      assert.throws(() => buildResNet50({ mode: 'pretrained', numClasses: 1000, inputSize }), /multiple of 16/);
    }
  });

  it('shows only the model row at depth 0', () => {
    const summary = summaryOf({ mode: 'feature_extraction', numClasses: 3, inputSize: 32 }, 0);
    assert.equal(summary.rows.length, 1);
    assert.equal(summary.rows[0].params, summary.totals.totalParams);
  });

  it('derives every shallower depth from the depth-3 summary exactly', () => {
    const resnet = buildResNet50({
      mode: 'fine_tuning',
      numClasses: 5,
      inputSize: 64,
      fineTuning: { trainableFrom: 'layer2', freezeBatchNorm: true },
    });
    const full = summarize(resnet, 3);
    for (const depth of [0, 1, 2, 3]) assert.deepEqual(summaryAtDepth(full, depth), summarize(resnet, depth), `depth ${depth}`);
    resnet.dispose();
  });
});
