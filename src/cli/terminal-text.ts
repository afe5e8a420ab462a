/*
 * Text the CLI prints that others wrote: payloads, error texts, exchange names. An ESC sequence
 * in them could clear the screen, retitle the window or hide text, and a bidi override reorder
 * what the reader sees.
 */

/** JSON text with what JSON.stringify leaves raw escaped too. */
export function json(value: unknown): string {
  // JSON.stringify escapes C0 controls but leaves DEL, C1 controls (U+009B is a CSI to some
  // terminals) and bidi overrides raw; escaped, they read the same once parsed.
  return `${JSON.stringify(value, null, 2).replace(RAW_IN_JSON, unicodeEscape)}\n`;
}

/** Controls a terminal acts on rather than prints: C0 bar the line break, DEL and C1. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is its purpose
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g;
/** Bidi embeddings, overrides and isolates: they reorder what the reader sees. */
const BIDI = /[\u202a-\u202e\u2066-\u2069]/g;
const RAW_IN_JSON = /[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * Text as it may reach a terminal: every control character shown escaped (`\x1b`, `\u202e`),
 * line breaks kept (a CR LF as one line break).
 */
export function terminalText(text: string): string {
  return text
    .replace(/\r\n/g, '\n')
    .replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    .replace(BIDI, unicodeEscape);
}

/** `terminalText` for one table cell: a line break shows as `\n`, so the row stays one line. */
export function cell(text: string): string {
  return terminalText(text).replace(/\n/g, '\\n');
}
