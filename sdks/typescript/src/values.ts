/** UUID and timestamp spellings: liberal on input, canonical on output. */

const HEX32 = /^[0-9a-f]{32}$/;

/**
 * The canonical (lowercase, hyphenated) form of a UUID written in any usual
 * spelling: upper case, `{braces}`, a `urn:uuid:` prefix, 32 bare hex digits.
 * Returns `undefined` for anything else.
 */
export function canonicalUuid(text: string): string | undefined {
  let hex = text.toLowerCase();
  if (hex.startsWith("urn:uuid:")) hex = hex.slice("urn:uuid:".length);
  if (hex.startsWith("{") && hex.endsWith("}")) hex = hex.slice(1, -1);
  hex = hex.replaceAll("-", "");
  if (!HEX32.test(hex)) return undefined;
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
}

const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$/;

/**
 * The canonical form of an RFC 3339 timestamp: converted to UTC (no offset means
 * UTC), `Z` suffix, the fraction truncated to microseconds and written with six
 * digits unless it is zero. Returns `undefined` if `text` is not a timestamp or
 * falls outside the years 1 to 9999 in UTC.
 */
export function canonicalTimestamp(text: string): string | undefined {
  const match = TIMESTAMP.exec(text);
  if (match === null) return undefined;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [
    number, number, number, number, number, number,
  ];
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // plain Date.UTC maps years 0-99 to 1900-1999
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) {
    return undefined; // month 13, February 30, ...
  }
  const [sign, offsetHours, offsetMinutes] = [match[9], Number(match[10] ?? 0), Number(match[11] ?? 0)];
  if (offsetHours > 23 || offsetMinutes > 59) return undefined;
  const offsetMs = (sign === "-" ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
  date.setUTCHours(hour, minute, second, 0);
  const micros = Number((match[7] ?? "").slice(0, 6).padEnd(6, "0"));
  return formatTimestamp(new Date(date.getTime() - offsetMs), micros);
}

/** `date` (whole seconds are used) plus `micros`, in canonical form; `undefined` outside years 1-9999. */
function formatTimestamp(date: Date, micros: number): string | undefined {
  const year = date.getUTCFullYear();
  if (year < 1 || year > 9999) return undefined;
  const two = (n: number): string => String(n).padStart(2, "0");
  const fraction = micros === 0 ? "" : `.${String(micros).padStart(6, "0")}`;
  return (
    `${String(year).padStart(4, "0")}-${two(date.getUTCMonth() + 1)}-${two(date.getUTCDate())}` +
    `T${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())}${fraction}Z`
  );
}

/** The current time as a canonical timestamp (millisecond precision). */
export function timestampNow(): string {
  const now = new Date();
  return formatTimestamp(now, now.getUTCMilliseconds() * 1000) as string;
}
