package bench

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// value is the pair's ratio as a number (0 when it has none) and the
// p99 latency of its workload side.
func (p *comparePair) value() (ratio float64, p99 time.Duration) {
	if p.skipped != "" || p.target == nil {
		return 0, 0
	}
	_, p99 = latencies(p.target.opStats)
	switch {
	case p.raw != nil:
		if p.raw.elapsed > 0 && p.raw.rows > 0 {
			return p.target.rate() / (float64(p.raw.rows) / p.raw.elapsed.Seconds()), p99
		}
	case p.nginx != nil:
		if n := p.nginx.mbps(); n > 0 {
			return p.target.mbps() / n, p99
		}
	case p.reference != nil:
		if r := p.reference.rate(); r > 0 {
			return p.target.rate() / r, p99
		}
	}
	return 0, p99
}

// median of a non-empty list (the mean of the middle two for an even count).
func median[T float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// printRepeatSummary prints, per workload, the ratio of each run, their
// median and spread (lowest to highest), and the median p99 of the
// workload side: the --repeat summary.
func printRepeatSummary(w io.Writer, reps []*compareReport) {
	fmt.Fprintf(w, "== summary of %d runs (a ratio comes from one run: both sides under the same load)\n", len(reps))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tratio per run\tmedian\tspread\tworkload p99 (median)")
	for i, p := range reps[0].pairs {
		var ratios []float64
		var p99s []time.Duration
		var each []string
		for _, rep := range reps {
			if i >= len(rep.pairs) {
				continue
			}
			r, p99 := rep.pairs[i].value()
			if r <= 0 {
				each = append(each, "n/a")
				continue
			}
			ratios = append(ratios, r)
			p99s = append(p99s, p99)
			each = append(each, strconv.FormatFloat(r, 'f', 2, 64))
		}
		if len(ratios) == 0 {
			fmt.Fprintf(tw, "%s\t%s\tn/a\tn/a\tn/a\n", p.name, strings.Join(each, " "))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f-%.2f\t%s\n", p.name, strings.Join(each, " "), median(ratios),
			slices.Min(ratios), slices.Max(ratios), ms3(median(p99s)))
	}
	tw.Flush()
}
