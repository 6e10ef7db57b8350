// make assets: minify the consent banner's and the tracker's sources into the files Gardien
// serves.
// Each output starts with the sha256 of its source, so a pytest (no Node needed) fails when a
// source changed and the committed build was not remade.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { minify as minifyCss } from 'csso';
import { minify as minifyJs } from 'terser';

const consent = fileURLToPath(new URL('../../src/gardien/consent/', import.meta.url));
const analytics = fileURLToPath(new URL('../../src/gardien/analytics/', import.meta.url));

function header(name, source) {
  const digest = createHash('sha256').update(source).digest('hex');
  return `/*! ${name} sha256:${digest} */\n`;
}

const js = readFileSync(`${consent}assets/gardien-consent.js`);
const jsOut = await minifyJs(js.toString('utf8'), {
  compress: { passes: 2 },
  mangle: true,
  format: { comments: false },
});
writeFileSync(
  `${consent}static/gardien-consent.min.js`,
  header('gardien-consent.js', js) + jsOut.code + '\n'
);

const css = readFileSync(`${consent}assets/gardien-consent.css`);
writeFileSync(
  `${consent}static/gardien-consent.min.css`,
  header('gardien-consent.css', css) + minifyCss(css.toString('utf8')).css + '\n'
);

// The tracker: every visitor of a measured site downloads it, hence the harder squeeze.
const tracker = readFileSync(`${analytics}assets/gardien.js`);
const trackerOut = await minifyJs(tracker.toString('utf8'), {
  ecma: 2020, // browsers from 2020 on (the source uses optional chaining)
  compress: { passes: 3, unsafe: true, unsafe_arrows: true, unsafe_methods: true },
  mangle: true,
  format: { comments: false },
});
writeFileSync(
  `${analytics}static/gardien.min.js`,
  header('gardien.js', tracker) + trackerOut.code + '\n'
);
