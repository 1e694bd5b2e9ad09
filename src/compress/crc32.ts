/**
 * CRC-32 of two pieces joined, from the CRC of each and the second's length: gzip's trailer is
 * made from the blocks' own CRCs, so a block copied from an earlier layer brings its CRC along
 * and its bytes need no second pass. Node has zlib.crc32 but not zlib's crc32_combine.
 *
 * The arithmetic is on polynomials over GF(2), reflected as CRC-32 is: appending n zero bytes to
 * a message multiplies its CRC by x^(8n) modulo the CRC polynomial.
 */
const POLY = 0xedb88320;

/** a * b modulo the polynomial (bit 31 is x^0). */
function multiply(a: number, b: number): number {
  let product = 0;
  for (let m = 0x80000000; a !== 0 && m !== 0; m >>>= 1) {
    if (a & m) {
      product ^= b;
      a = (a ^ m) >>> 0;
    }
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return product >>> 0;
}

/** x^(2^k) modulo the polynomial, for k = 0..31 (x^(2^k) repeats with period dividing 2^32 - 1). */
const SQUARES: number[] = [];
for (let k = 0, p = 0x40000000; k < 32; k++, p = multiply(p, p)) SQUARES.push(p);

/** x^(8n) modulo the polynomial: the factor n zero bytes apply. */
function zeroBytes(n: number): number {
  let p = 0x80000000;
  for (let k = 3; n > 0; k++, n = Math.floor(n / 2)) {
    if (n % 2) p = multiply(SQUARES[k % 32]!, p);
  }
  return p;
}

/** The CRC-32 of A followed by B, given crc(A), crc(B) and B's length in bytes. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multiply(zeroBytes(lengthB), crcA) ^ crcB) >>> 0;
}
