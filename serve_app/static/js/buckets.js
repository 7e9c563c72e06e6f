// Buckets sized to a chart: about one point per few pixels of its width, rounded up to a
// width people read (1s … 1d, then whole days), so any range from 5 minutes to 90 days draws
// a few hundred true aggregates, never thousands of raw rows.

const NICE_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const PX_PER_POINT = 4;

export function bucketFor(rangeS, widthPx) {
  const points = Math.max(20, Math.floor((widthPx || 600) / PX_PER_POINT));
  const target = rangeS / points;
  return NICE_S.find((b) => b >= target) || Math.ceil(target / 86400) * 86400;
}

export function bucketText(bucketS) {
  if (bucketS % 86400 === 0) return `${bucketS / 86400}d`;
  if (bucketS % 3600 === 0) return `${bucketS / 3600}h`;
  if (bucketS % 60 === 0) return `${bucketS / 60}m`;
  return `${bucketS}s`;
}

// Bucket starts (epoch s) covering [fromS, toS).
export function bucketGrid(fromS, toS, bucketS) {
  const xs = [];
  for (let x = Math.floor(fromS / bucketS) * bucketS; x < toS; x += bucketS) xs.push(x);
  return xs;
}
