/** The Server panel: connections, subscriptions and events/s from `/metrics`, with a small live chart. */

import { metricsText, parseMetrics } from '../api';
import { h } from './dom';

const POLL_MS = 1000;
const POINTS = 60;
const SVG = 'http://www.w3.org/2000/svg';

export class ServerPanel {
  readonly root: HTMLElement;
  private readonly conns = h('dd', {}, '–');
  private readonly subs = h('dd', {}, '–');
  private readonly pubRate = h('dd', {}, '–');
  private readonly delRate = h('dd', {}, '–');
  private readonly note = h('p', { class: 'muted small' });
  private readonly line: SVGPolylineElement;
  private readonly line2: SVGPolylineElement;
  private readonly chart: SVGSVGElement;
  private prev: { t: number; pub: number; del: number } | null = null;
  private pub: number[] = [];
  private del: number[] = [];

  constructor() {
    this.chart = document.createElementNS(SVG, 'svg');
    this.chart.setAttribute('viewBox', `0 0 ${POINTS - 1} 40`);
    this.chart.setAttribute('preserveAspectRatio', 'none');
    this.chart.setAttribute('class', 'chart');
    this.chart.setAttribute('role', 'img');
    this.line = document.createElementNS(SVG, 'polyline');
    this.line.setAttribute('class', 'chart-pub');
    this.line2 = document.createElementNS(SVG, 'polyline');
    this.line2.setAttribute('class', 'chart-del');
    this.chart.append(this.line2, this.line);
    this.root = h(
      'section',
      { class: 'panel server-panel', 'aria-labelledby': 'srv-h' },
      h('h2', { id: 'srv-h' }, 'Server'),
      h('dl', { class: 'stats' }, h('div', {}, h('dt', {}, 'Connections'), this.conns), h('div', {}, h('dt', {}, 'Subscriptions'), this.subs), h('div', {}, h('dt', { class: 'k-pub' }, 'Published/s'), this.pubRate), h('div', {}, h('dt', { class: 'k-del' }, 'Delivered/s'), this.delRate)),
      this.chart,
      this.note,
    );
    this.chart.setAttribute('aria-label', 'Events per second, last minute');
    void this.poll();
    setInterval(() => {
      if (!document.hidden) void this.poll();
    }, POLL_MS);
  }

  private async poll(): Promise<void> {
    let m: Map<string, number>;
    try {
      m = parseMetrics(await metricsText());
    } catch {
      this.note.textContent = 'metrics unavailable';
      return;
    }
    this.note.textContent = '';
    const t = performance.now();
    this.conns.textContent = fmt(m.get('jobwire_connections'));
    this.subs.textContent = fmt(m.get('jobwire_subscriptions'));
    const pub = m.get('jobwire_events_published_total') ?? 0;
    const del = m.get('jobwire_events_delivered_total') ?? 0;
    if (this.prev && pub >= this.prev.pub && del >= this.prev.del) {
      const dt = (t - this.prev.t) / 1000;
      const pr = (pub - this.prev.pub) / dt;
      const dr = (del - this.prev.del) / dt;
      this.pubRate.textContent = pr.toFixed(pr < 10 ? 1 : 0);
      this.delRate.textContent = dr.toFixed(dr < 10 ? 1 : 0);
      this.push(pr, dr);
    }
    // A counter that went down: the server restarted; start the rates again.
    this.prev = { t, pub, del };
  }

  private push(pr: number, dr: number): void {
    this.pub.push(pr);
    this.del.push(dr);
    if (this.pub.length > POINTS) this.pub.shift();
    if (this.del.length > POINTS) this.del.shift();
    const max = Math.max(1, ...this.pub, ...this.del);
    const pts = (a: number[]) => a.map((v, i) => `${i + POINTS - a.length},${(40 - (v / max) * 38).toFixed(1)}`).join(' ');
    this.line.setAttribute('points', pts(this.pub));
    this.line2.setAttribute('points', pts(this.del));
    this.chart.setAttribute('aria-label', `Events per second, last minute: now ${pr.toFixed(1)} published, ${dr.toFixed(1)} delivered; peak ${max.toFixed(0)}`);
  }
}

function fmt(v: number | undefined): string {
  return v === undefined ? '–' : String(v);
}
