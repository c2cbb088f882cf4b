// Writes src/admin/dashboard/world.json, the dashboard's world map: one SVG path per country
// (ISO 3166-1 alpha-2 code -> path data) in an equirectangular projection from 84 N to 60 S
// (Antarctica left out), 720 x 288 units, whole units (half a degree).
//
// Source: Natural Earth 1:110m countries (public domain) as packaged by npm `world-atlas`
// 2.0.2 (ISC); numeric -> alpha-2 codes from npm `i18n-iso-countries` (MIT). Regenerate with:
//
//   mkdir -p /tmp/wmap && cd /tmp/wmap && npm install --no-save world-atlas@2.0.2 \
//       topojson-client@3.1.0 i18n-iso-countries@7.14.0
//   NODE_PATH=/tmp/wmap/node_modules node data/dashboard_world_map.mjs   # from the repo root
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(path.join(process.env.NODE_PATH || '.', 'x.js'));
const topojson = require('topojson-client');
const countries = require('i18n-iso-countries');
const world = require('world-atlas/countries-110m.json');

const K = 2;
const NORTH = 84;
const SOUTH = -60;
const project = ([lon, lat]) => [
  Math.round((lon + 180) * K),
  Math.round((NORTH - Math.max(SOUTH, Math.min(NORTH, lat))) * K),
];

function ring(points) {
  const out = [];
  for (const p of points.map(project)) {
    const last = out[out.length - 1];
    if (!last || last[0] !== p[0] || last[1] !== p[1]) out.push(p);
  }
  if (out.length < 3) return '';
  // A ring across the antimeridian (Fiji, Chukotka) would span the whole map: draw its
  // western points past the east edge instead (clipped by the view box).
  const xs = out.map((p) => p[0]);
  if (Math.max(...xs) - Math.min(...xs) > 180 * K) {
    for (const p of out) if (p[0] < 180 * K) p[0] += 360 * K;
  }
  return 'M' + out.map((p) => p[0] + ' ' + p[1]).join(' ') + 'Z';
}

const shapes = {};
for (const f of topojson.feature(world, world.objects.countries).features) {
  if (f.id === '010' || f.id === undefined) continue; // Antarctica; unnamed areas
  const code = countries.numericToAlpha2(f.id);
  if (!code) continue;
  const g = f.geometry;
  const polygons = g.type === 'Polygon' ? [g.coordinates] : g.coordinates;
  const d = polygons.flatMap((poly) => poly.map(ring)).join('');
  if (d) shapes[code] = (shapes[code] || '') + d;
}
// world-atlas's ISC notice travels with the shapes (in the file, so in the binary too).
const license = readFileSync(require.resolve('world-atlas/LICENSE'), 'utf8').trim();
const out = {
  source: 'Natural Earth 1:110m (public domain) via npm world-atlas 2.0.2 (ISC)',
  license,
  width: 360 * K,
  height: (NORTH - SOUTH) * K,
  countries: shapes,
};
const file = path.join('src', 'admin', 'dashboard', 'world.json');
writeFileSync(file, JSON.stringify(out) + '\n');
console.log(`${file}: ${Object.keys(shapes).length} countries`);
