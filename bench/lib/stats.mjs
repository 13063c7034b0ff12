// Statistics of the measurements: medians, percentiles, latency samples, number formatting.

/** @param {number[]} values */
export function median(values) {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * The `p`-th percentile (0–100) of a sorted Float64Array, nearest-rank.
 * @param {Float64Array} sorted
 * @param {number} p
 */
export function percentile(sorted, p) {
  if (sorted.length === 0) return undefined;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** A growable list of float samples (latencies in ms), cheap to append to in a hot event handler. */
export class Samples {
  #data = new Float64Array(1 << 16);
  #length = 0;
  /** @param {number} value */
  push(value) {
    if (this.#length === this.#data.length) {
      const bigger = new Float64Array(this.#data.length * 2);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    this.#data[this.#length++] = value;
  }
  get length() {
    return this.#length;
  }
  sorted() {
    return this.#data.slice(0, this.#length).sort();
  }
}

/** @param {number | undefined} value @param {number} [digits] */
export function fixed(value, digits = 0) {
  return value === undefined || !Number.isFinite(value) ? "—" : value.toFixed(digits);
}
