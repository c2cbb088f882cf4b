// levee dashboard: polls /stats and draws it. No data is embedded in the page; everything
// comes from /stats, sent with the admin token as a Bearer header. Text is set with
// textContent only (organisation names come from a GeoIP database, never trust them as HTML).
'use strict';

(function () {
  // /stats windows tick once a second; polling twice a second shows a tick within half a
  // second of it.
  const POLL_MS = 500;
  // Without an answer for this long the figures are marked stale.
  const STALE_MS = 3000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  let token = takeToken();
  let lastOk = 0;
  let lastError = '';

  // The token from ?token=, then out of the address bar and history. It stays in this
  // page's memory only: the page itself needs the token too, so a reload goes through the
  // link again and nothing would read a stored copy.
  function takeToken() {
    const url = new URL(window.location.href);
    const given = url.searchParams.get('token');
    if (given === null) return null;
    url.searchParams.delete('token');
    window.history.replaceState(null, '', url.pathname + url.search + url.hash);
    return given;
  }

  let names = null;
  try {
    names = new Intl.DisplayNames(['en'], { type: 'region' });
  } catch (_) {
    names = null;
  }
  function countryName(code) {
    if (code === 'ZZ') return 'unknown';
    try {
      return names ? names.of(code) : code;
    } catch (_) {
      return code;
    }
  }

  function num(v) {
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  }
  function rate(v) {
    v = num(v);
    if (v === null) return '-';
    if (v >= 1000) return (v / 1000).toFixed(1) + 'k';
    if (v >= 100) return v.toFixed(0);
    return v.toFixed(1);
  }
  function ratio(v) {
    v = num(v);
    return v === null ? '-' : '\u00d7' + (v >= 10 ? v.toFixed(0) : v.toFixed(1));
  }
  function percent(v) {
    v = num(v);
    return v === null ? '-' : (100 * v).toFixed(0) + '%';
  }
  function ms(v) {
    v = num(v);
    if (v === null) return '-';
    return (v >= 10 ? v.toFixed(0) : v.toFixed(1)) + ' ms';
  }
  function ago(unixSeconds, now) {
    const s = Math.max(0, Math.round(now - unixSeconds));
    if (s < 90) return s + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }
  function uptime(s) {
    s = Math.floor(num(s) || 0);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h > 0 ? h + 'h' + String(m).padStart(2, '0') + 'm' : m + 'm' + String(s % 60).padStart(2, '0') + 's';
  }

  // A 60 s sparkline of connections per second, with the baseline as a dashed line.
  function sparkline(history, baseline) {
    const values = Array.isArray(history) ? history.map((v) => num(v) || 0) : [];
    const w = 60;
    const h = 20;
    const top = Math.max(1, num(baseline) || 0, ...values);
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('aria-hidden', 'true');
    const y = (v) => (h - 1 - (v / top) * (h - 2)).toFixed(2);
    if (values.length > 1) {
      const step = w / (values.length - 1);
      const points = values.map((v, i) => (i * step).toFixed(2) + ',' + y(v)).join(' ');
      const area = document.createElementNS(SVG_NS, 'polygon');
      area.setAttribute('points', '0,' + h + ' ' + points + ' ' + w + ',' + h);
      area.setAttribute('class', 'spark-area');
      svg.appendChild(area);
      const line = document.createElementNS(SVG_NS, 'polyline');
      line.setAttribute('points', points);
      line.setAttribute('class', 'spark-line');
      svg.appendChild(line);
    }
    if (num(baseline) !== null && baseline > 0) {
      const base = document.createElementNS(SVG_NS, 'line');
      base.setAttribute('x1', '0');
      base.setAttribute('x2', String(w));
      base.setAttribute('y1', y(baseline));
      base.setAttribute('y2', y(baseline));
      base.setAttribute('class', 'spark-base');
      svg.appendChild(base);
    }
    return svg;
  }

  // What admission control does about `code`: its auto cap (or dry run) and its shed rate.
  function admissionFor(code, doc, row) {
    const auto = (doc.admission && doc.admission.auto) || {};
    const caps = Array.isArray(auto.caps) ? auto.caps : [];
    const cap = caps.find((c) => c.country === code);
    const shed = row ? num(row.shed_rate_1s) || 0 : 0;
    const parts = [];
    if (cap && cap.dry_run) parts.push('dry run: would cap at ' + rate(cap.cap_per_sec) + '/s');
    else if (cap) parts.push('capped at ' + rate(cap.cap_per_sec) + '/s');
    else if (!auto.enabled) parts.push('auto caps off');
    else parts.push('no cap yet');
    parts.push(shed > 0 ? 'shedding ' + rate(shed) + '/s' : 'not shedding');
    return parts.join(', ');
  }

  function asnText(a) {
    const n = num(a.asn);
    const org = typeof a.org === 'string' && a.org !== '' ? ' ' + a.org : '';
    return (n ? 'AS' + n : 'no ASN') + org + ' ' + rate(a.conn_rate_10s) + '/s';
  }

  function renderBanner(doc, rows) {
    const banner = $('banner');
    const spikes = Array.isArray(doc.spikes) ? doc.spikes : [];
    if (spikes.length === 0) {
      banner.hidden = true;
      banner.dataset.countries = '';
      banner.replaceChildren();
      return;
    }
    const now = num(doc.generated_at) || Date.now() / 1000;
    const items = spikes
      .slice()
      .sort((a, b) => (num(b.ratio) || 0) - (num(a.ratio) || 0))
      .map((s) => {
        const row = rows.find((r) => r.country === s.country);
        const item = el('div', 'spike');
        const head = el('p', 'spike-head');
        head.appendChild(el('strong', 'spike-country', 'SPIKE ' + s.country));
        head.appendChild(el('span', 'spike-name', ' ' + countryName(s.country)));
        head.appendChild(
          el(
            'span',
            'spike-rate',
            ' ' + rate(s.rate) + '/s vs baseline ' + rate(s.baseline) + '/s (' + ratio(s.ratio) +
              '), for ' + ago(num(s.since) || now, now),
          ),
        );
        item.appendChild(head);
        const asns = Array.isArray(s.top_asns) ? s.top_asns : [];
        item.appendChild(
          el('p', 'spike-asns', 'top ASNs: ' + (asns.length ? asns.slice(0, 5).map(asnText).join(' \u00b7 ') : 'none known')),
        );
        // Fresh clients (no resumption) and slow handshakes tell a flood from a crowd.
        const usual = row && num(row.resumed_share_baseline) !== null ? ' (usually ' + percent(row.resumed_share_baseline) + ')' : '';
        item.appendChild(
          el('p', 'spike-handshakes', 'handshakes: resumed ' + percent(s.resumed_share) + usual + ', p99 ' + ms(s.handshake_p99_ms)),
        );
        item.appendChild(el('p', 'spike-admission', 'admission: ' + admissionFor(s.country, doc, row)));
        return item;
      });
    banner.replaceChildren(...items);
    banner.dataset.countries = spikes.map((s) => s.country).join(' ');
    banner.hidden = false;
  }

  function stat(label, value) {
    const d = el('div', 'stat');
    d.appendChild(el('span', 'stat-value', value));
    d.appendChild(el('span', 'stat-label', label));
    return d;
  }

  function renderTotals(doc) {
    const t = doc.totals || {};
    const hs = t.tls_handshakes || {};
    const done = (num(hs.full) || 0) + (num(hs.resumed) || 0);
    const req = t.requests || {};
    const reqs = ['1xx', '2xx', '3xx', '4xx', '5xx'].reduce((s, k) => s + (num(req[k]) || 0), 0);
    $('totals').replaceChildren(
      stat('conn/s', rate(t.conn_rate_10s)),
      stat('req/s', rate(t.req_rate_10s)),
      stat('active', String(num(t.connections_active) || 0)),
      stat('shed/s', rate(t.shed_rate_1s)),
      stat('resumed', done ? percent((num(hs.resumed) || 0) / done) : '-'),
      stat('5xx', reqs ? percent((num(req['5xx']) || 0) / reqs) : '-'),
    );
    const c = doc.config || {};
    const workers = Array.isArray(doc.workers) ? doc.workers.length : 0;
    $('meta').textContent = 'gen ' + (c.generation ?? '-') + ' \u00b7 up ' + uptime(doc.uptime_seconds) + ' \u00b7 ' + workers + ' workers';
  }

  function renderAdmission(doc) {
    const a = doc.admission || {};
    const auto = a.auto || {};
    const caps = Array.isArray(auto.caps) ? auto.caps : [];
    const parts = [];
    if (!auto.enabled) parts.push('auto caps off');
    else parts.push('auto caps on' + (auto.dry_run ? ' (dry run)' : ''));
    for (const c of caps) {
      parts.push((c.dry_run ? 'would cap ' : 'capping ') + c.country + ' at ' + rate(c.cap_per_sec) + '/s');
    }
    const rejected = a.rejected || {};
    const reasons = Object.keys(rejected)
      .filter((k) => (num(rejected[k]) || 0) > 0)
      .map((k) => k + ' ' + rejected[k]);
    if (reasons.length) parts.push('refused since start: ' + reasons.join(', '));
    if ((num(a.dry_run_would_reject) || 0) > 0) parts.push('dry run would have refused ' + a.dry_run_would_reject);
    $('admission').textContent = 'Admission: ' + parts.join(' \u00b7 ');
  }

  function cell(label, text, cls) {
    const td = el('td', cls, text);
    td.dataset.label = label;
    return td;
  }

  function renderCountries(rows) {
    const body = rows.map((r) => {
      const tr = el('tr', r.spiking ? 'spiking' : '');
      const name = el('td', 'country');
      name.dataset.label = 'country';
      name.appendChild(el('span', 'code', r.country));
      name.appendChild(el('span', 'name', countryName(r.country)));
      tr.appendChild(name);
      const spark = el('td', 'spark-cell');
      spark.dataset.label = 'last 60 s';
      spark.appendChild(sparkline(r.history, r.baseline));
      tr.appendChild(spark);
      tr.appendChild(cell('conn/s', rate(r.conn_rate_10s), 'num'));
      tr.appendChild(cell('baseline', rate(r.baseline), 'num'));
      // Before the baseline has seen a few seconds there is no ratio to show.
      const warm = (num(r.baseline) || 0) > 0 || (num(r.spike_ratio) || 0) > 0;
      tr.appendChild(cell('ratio', warm ? ratio(r.spike_ratio) : '-', 'num'));
      tr.appendChild(cell('resumed', percent(r.resumed_share), 'num'));
      tr.appendChild(cell('hs p99', ms(r.handshake_p99_ms), 'num'));
      const shed = num(r.shed_rate_1s) || 0;
      tr.appendChild(cell('shed/s', rate(shed), shed > 0 ? 'num shed' : 'num'));
      return tr;
    });
    $('rows').replaceChildren(...body);
    $('empty').hidden = rows.length > 0;
  }

  // The world map: country code -> its path, once world.json has loaded.
  const shapes = new Map();
  let lastRows = [];

  async function loadMap() {
    try {
      const r = await fetch('/dashboard/world.json', { cache: 'no-store', credentials: 'omit' });
      if (!r.ok) return;
      const world = await r.json();
      const svg = document.createElementNS(SVG_NS, 'svg');
      svg.setAttribute('viewBox', '0 0 ' + world.width + ' ' + world.height);
      svg.setAttribute('class', 'world');
      svg.setAttribute('role', 'img');
      svg.setAttribute('aria-label', 'world map shaded by connection rate');
      for (const [code, d] of Object.entries(world.countries || {})) {
        const p = document.createElementNS(SVG_NS, 'path');
        p.setAttribute('d', d);
        p.setAttribute('class', 'land');
        const title = document.createElementNS(SVG_NS, 'title');
        title.textContent = code;
        p.appendChild(title);
        svg.appendChild(p);
        shapes.set(code, p);
      }
      $('map').appendChild(svg);
      $('map').hidden = false;
      renderMap(lastRows);
    } catch (_) {
      // The page works without its map.
    }
  }

  // Shades each country in five steps of log(rate), relative to the busiest; spiking red.
  function renderMap(rows) {
    if (shapes.size === 0) return;
    const rates = new Map(rows.map((r) => [r.country, r]));
    const top = Math.log1p(Math.max(0, ...rows.map((r) => num(r.conn_rate_10s) || 0)));
    for (const [code, p] of shapes) {
      const r = rates.get(code);
      const v = r ? num(r.conn_rate_10s) || 0 : 0;
      const level = v > 0 && top > 0 ? Math.max(1, Math.ceil((4 * Math.log1p(v)) / top)) : 0;
      p.setAttribute('class', 'land l' + level + (r && r.spiking ? ' hot' : ''));
      p.firstChild.textContent = countryName(code) + (r ? ': ' + rate(v) + ' conn/s' : '');
    }
  }

  function render(doc) {
    const rows = Array.isArray(doc.countries) ? doc.countries : [];
    lastRows = rows;
    renderBanner(doc, rows);
    renderTotals(doc);
    renderAdmission(doc);
    renderCountries(rows);
    renderMap(rows);
  }

  function setStatus(kind, text) {
    const s = $('status');
    s.className = 'status ' + kind;
    s.textContent = text;
    document.body.classList.toggle('is-stale', kind !== 'live');
  }

  function refreshStatus() {
    if (lastOk === 0) {
      if (lastError) setStatus('down', lastError);
      return;
    }
    const age = Date.now() - lastOk;
    if (age > STALE_MS) {
      setStatus('down', 'disconnected: ' + (lastError || 'no answer') + ', last update ' + Math.round(age / 1000) + ' s ago');
    } else if (lastError) {
      setStatus('stale', 'stale: ' + lastError);
    } else {
      setStatus('live', 'live');
    }
  }

  async function poll() {
    let delay = POLL_MS;
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    try {
      const r = await fetch('/stats', { headers: headers, cache: 'no-store', credentials: 'omit' });
      if (r.status === 401) {
        lastError = 'unauthorized: give the admin token';
        $('login').hidden = false;
        delay = 2000;
      } else if (!r.ok) {
        lastError = '/stats answered ' + r.status;
      } else {
        const doc = await r.json();
        render(doc);
        lastOk = Date.now();
        lastError = '';
        $('login').hidden = true;
      }
    } catch (e) {
      lastError = 'cannot reach levee';
    }
    refreshStatus();
    window.setTimeout(poll, delay);
  }

  function start() {
    $('login').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('token').value.trim();
      if (t) {
        token = t;
        $('token').value = '';
      }
    });
    window.setInterval(refreshStatus, 1000);
    poll();
    loadMap();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
