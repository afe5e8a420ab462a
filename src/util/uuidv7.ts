import { randomFillSync } from 'node:crypto';

/** Random bytes drawn 4 KiB at a time: one call into the CPRNG per 256 ids, not one per id. */
const entropy = Buffer.alloc(4096);
let entropyUsed = entropy.length;
const bytes = Buffer.alloc(16);

/** A UUIDv7 (RFC 9562): time-ordered, so ids sort roughly by creation and index well. */
export function uuidv7(now: number = Date.now()): string {
  if (entropyUsed === entropy.length) {
    randomFillSync(entropy);
    entropyUsed = 0;
  }
  // Every byte is used once: the 6 of the timestamp are overwritten, the rest are the id's.
  entropy.copy(bytes, 0, entropyUsed, entropyUsed + 16);
  entropyUsed += 16;
  bytes.writeUIntBE(now, 0, 6);
  bytes[6] = (bytes[6]! & 0x0f) | 0x70;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
