/**
 * Whether amqplib can encode `n` in a field table (headers). It sends a number of 2^50 or more in
 * magnitude (below 2^63) as a 64-bit integer, so one with a fraction there, or below -2^63 (or
 * -Infinity, or NaN), fails the publish ("value out of range"). Doubles at 2^63 and over, and
 * fractions below 2^50, are fine.
 */
export function amqpEncodableNumber(n: number): boolean {
  if (n >= 2 ** 63) return true;
  if (Math.abs(n) < 2 ** 50 && !Number.isInteger(n)) return true;
  return Number.isInteger(n) && n >= -(2 ** 63);
}

/** Why `amqpEncodableNumber(n)` is false, after the name of the header that holds `n`. */
export function unencodableNumberProblem(n: number): string {
  return `is ${n}, which amqplib would send as a 64-bit integer and cannot (below -2^63, or a fraction at 2^50 or more in magnitude): send it as a string`;
}
