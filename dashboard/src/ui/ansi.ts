/** ANSI SGR colours in log lines -> spans with classes (16 colours, bright, 256-colour and RGB, bold, dim, italic, underline). */

interface Style {
  fg?: string;
  bg?: string;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
}

// ESC [ params m  (other CSI sequences are dropped)
const CSI = /\x1b\[([0-9;]*)([A-Za-z])/g;

function xterm256(n: number): string {
  if (n < 16) return `c${n}`;
  if (n < 232) {
    const v = n - 16;
    const c = (x: number) => (x === 0 ? 0 : 55 + x * 40);
    return `rgb(${c(Math.floor(v / 36))},${c(Math.floor(v / 6) % 6)},${c(v % 6)})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

function apply(style: Style, params: number[]): void {
  if (params.length === 0) params = [0];
  for (let i = 0; i < params.length; i++) {
    const p = params[i]!;
    if (p === 0) {
      for (const k of Object.keys(style)) delete style[k as keyof Style];
    } else if (p === 1) style.bold = true;
    else if (p === 2) style.dim = true;
    else if (p === 3) style.italic = true;
    else if (p === 4) style.underline = true;
    else if (p === 22) style.bold = style.dim = false;
    else if (p === 23) style.italic = false;
    else if (p === 24) style.underline = false;
    else if (p >= 30 && p <= 37) style.fg = `c${p - 30}`;
    else if (p >= 90 && p <= 97) style.fg = `c${p - 90 + 8}`;
    else if (p === 39) delete style.fg;
    else if (p >= 40 && p <= 47) style.bg = `c${p - 40}`;
    else if (p >= 100 && p <= 107) style.bg = `c${p - 100 + 8}`;
    else if (p === 49) delete style.bg;
    else if ((p === 38 || p === 48) && params[i + 1] === 5) {
      const c = xterm256(params[i + 2] ?? 0);
      if (p === 38) style.fg = c;
      else style.bg = c;
      i += 2;
    } else if ((p === 38 || p === 48) && params[i + 1] === 2) {
      const c = `rgb(${params[i + 2] ?? 0},${params[i + 3] ?? 0},${params[i + 4] ?? 0})`;
      if (p === 38) style.fg = c;
      else style.bg = c;
      i += 4;
    }
  }
}

function span(text: string, s: Style): Node {
  if (!s.fg && !s.bg && !s.bold && !s.dim && !s.italic && !s.underline) return document.createTextNode(text);
  const el = document.createElement('span');
  el.textContent = text;
  const cls: string[] = [];
  if (s.fg) {
    if (s.fg.startsWith('c')) cls.push(`fg-${s.fg}`);
    else el.style.color = s.fg;
  }
  if (s.bg) {
    if (s.bg.startsWith('c')) cls.push(`bg-${s.bg}`);
    else el.style.backgroundColor = s.bg;
  }
  if (s.bold) cls.push('ansi-bold');
  if (s.dim) cls.push('ansi-dim');
  if (s.italic) cls.push('ansi-italic');
  if (s.underline) cls.push('ansi-underline');
  if (cls.length) el.className = cls.join(' ');
  return el;
}

/** Appends `line` to `into` as text and styled spans. */
export function renderAnsi(line: string, into: HTMLElement): void {
  if (!line.includes('\x1b')) {
    into.textContent = line;
    return;
  }
  const style: Style = {};
  let last = 0;
  CSI.lastIndex = 0;
  for (let m = CSI.exec(line); m; m = CSI.exec(line)) {
    if (m.index > last) into.append(span(line.slice(last, m.index), style));
    if (m[2] === 'm') apply(style, m[1] ? m[1].split(';').map((x) => Number(x) || 0) : []);
    last = CSI.lastIndex;
  }
  if (last < line.length) into.append(span(line.slice(last), style));
}

/** The line without escape sequences (for the downloaded log and for tests). */
export function stripAnsi(line: string): string {
  return line.replace(CSI, '');
}
