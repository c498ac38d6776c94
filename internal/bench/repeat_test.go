package bench

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{0.9, 0.5, 0.7}, 0.7}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if got := median([]time.Duration{3, 1, 2}); got != 2 {
		t.Errorf("median of durations = %v", got)
	}
}

// TestBenchCompareRepeatSummarisesEachRatio: --repeat runs the comparison
// again and prints, per workload, the ratio of each run (as printed in that
// run's table), their median and their spread.
func TestBenchCompareRepeatSummarisesEachRatio(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := seedDoneTasks(data, testutil.Schema(t), 20); err != nil {
		t.Fatal(err)
	}
	url, key, _ := benchServer(t, data)
	var out, errb bytes.Buffer
	code := Main([]string{"--compare", "--repeat", "3", "--url", url, "--api-key", key, "--clients", "2", "--duration", "200ms",
		"--rounds", "2", "--workload", "status,route"}, Env{}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	text := out.String()
	runs := strings.Split(text, "== run ")
	if len(runs) != 4 || !strings.Contains(text, "== summary of 3 runs") {
		t.Fatalf("want 3 runs and a summary:\n%s", text)
	}
	summary := text[strings.Index(text, "== summary"):]
	row := regexp.MustCompile(`(?m)^(status|route)\s+(\d+\.\d\d) (\d+\.\d\d) (\d+\.\d\d)\s+(\d+\.\d\d)\s+(\d+\.\d\d)-(\d+\.\d\d)\s`)
	rows := row.FindAllStringSubmatch(summary, -1)
	if len(rows) != 2 {
		t.Fatalf("want a summary row for status and route:\n%s", summary)
	}
	for _, r := range rows {
		var v [6]float64
		for i := range v {
			v[i], _ = strconv.ParseFloat(r[i+2], 64)
		}
		each := v[:3]
		lo, hi := min(each[0], each[1], each[2]), max(each[0], each[1], each[2])
		mid := each[0] + each[1] + each[2] - lo - hi
		f := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
		if f(v[3]) != f(mid) || v[4] != lo || v[5] != hi {
			t.Errorf("%s: median %v spread %v-%v of %v", r[1], v[3], v[4], v[5], each)
		}
		// Each run's ratio is the one that run's table printed.
		for i, run := range runs[1:] {
			if got := compareRatios(run)[r[1]]; got != r[i+2] {
				t.Errorf("%s run %d: table says %s, summary %s", r[1], i+1, got, r[i+2])
			}
		}
	}
	if code := Main([]string{"--compare", "--repeat", "10", "--url", url, "--api-key", key}, Env{}, &out, &errb); code != 2 {
		t.Errorf("--repeat 10: exit %d, want 2", code)
	}
}
