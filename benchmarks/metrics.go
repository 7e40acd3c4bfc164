package benchmarks

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The server histograms read from each process's /metrics.
const (
	MetricHashDuration  = "usher_hash_duration_seconds"
	MetricHashQueueWait = "usher_hash_queue_wait_seconds"
)

var scrapedMetrics = []string{MetricHashDuration, MetricHashQueueWait}

// promHist is one Prometheus histogram series, summed over processes.
type promHist struct {
	metric string
	labels map[string]string
	upper  []float64 // bucket upper bounds, ascending, +Inf last
	counts []float64 // cumulative counts
	sum    float64
	count  float64
}

type scrape map[string]*promHist // by metric name and labels

func seriesKey(metric string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(metric)
	for _, k := range keys {
		fmt.Fprintf(&b, ",%s=%s", k, labels[k])
	}
	return b.String()
}

// metricsURL turns an admin address into its /metrics URL.
func metricsURL(admin string) string {
	u := strings.TrimRight(admin, "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	if !strings.HasSuffix(u, "/metrics") {
		u += "/metrics"
	}
	return u
}

// scrapeAll reads the hash histograms of every admin address and sums them.
func scrapeAll(ctx context.Context, admins []string) (scrape, error) {
	out := scrape{}
	hc := &http.Client{Timeout: 5 * time.Second}
	for _, a := range admins {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL(a), nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("metrics %s: %w", a, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("metrics %s: %w", a, err)
		}
		for _, name := range scrapedMetrics {
			fam := families[name]
			if fam == nil || fam.GetType() != dto.MetricType_HISTOGRAM {
				continue
			}
			for _, m := range fam.GetMetric() {
				out.add(name, m)
			}
		}
	}
	return out, nil
}

func (s scrape) add(name string, m *dto.Metric) {
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	h := m.GetHistogram()
	key := seriesKey(name, labels)
	p := s[key]
	if p == nil {
		p = &promHist{metric: name, labels: labels}
		for _, b := range h.GetBucket() {
			p.upper = append(p.upper, b.GetUpperBound())
			p.counts = append(p.counts, 0)
		}
		if len(p.upper) == 0 || !math.IsInf(p.upper[len(p.upper)-1], 1) {
			p.upper = append(p.upper, math.Inf(1))
			p.counts = append(p.counts, 0)
		}
		s[key] = p
	}
	hasInf := false
	for i, b := range h.GetBucket() {
		if i < len(p.counts) {
			p.counts[i] += float64(b.GetCumulativeCount())
		}
		hasInf = hasInf || math.IsInf(b.GetUpperBound(), 1)
	}
	if !hasInf {
		p.counts[len(p.counts)-1] += float64(h.GetSampleCount())
	}
	p.sum += h.GetSampleSum()
	p.count += float64(h.GetSampleCount())
}

// ServerHistogram summarizes what a server histogram recorded during one
// step (the difference of two scrapes), in milliseconds. Percentiles are
// estimated within buckets as Prometheus's histogram_quantile does; the mean
// is exact.
type ServerHistogram struct {
	Metric string            `json:"metric"`
	Labels map[string]string `json:"labels"`
	Count  float64           `json:"count"`
	MeanMs float64           `json:"mean_ms"`
	P50Ms  float64           `json:"p50_ms"`
	P90Ms  float64           `json:"p90_ms"`
	P99Ms  float64           `json:"p99_ms"`
}

// diff returns what happened between two scrapes, series that saw no
// observations left out.
func diff(before, after scrape) []ServerHistogram {
	var out []ServerHistogram
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a := after[k]
		d := &promHist{metric: a.metric, labels: a.labels, upper: a.upper, counts: append([]float64(nil), a.counts...), sum: a.sum, count: a.count}
		if b := before[k]; b != nil && len(b.counts) == len(a.counts) {
			for i := range d.counts {
				d.counts[i] -= b.counts[i]
			}
			d.sum -= b.sum
			d.count -= b.count
		}
		if d.count <= 0 {
			continue
		}
		out = append(out, ServerHistogram{
			Metric: d.metric, Labels: d.labels, Count: d.count,
			MeanMs: 1000 * d.sum / d.count,
			P50Ms:  1000 * d.quantile(0.50),
			P90Ms:  1000 * d.quantile(0.90),
			P99Ms:  1000 * d.quantile(0.99),
		})
	}
	return out
}

// quantile interpolates linearly inside the bucket holding rank q; in the
// +Inf bucket it answers the highest finite bound.
func (p *promHist) quantile(q float64) float64 {
	total := p.counts[len(p.counts)-1]
	if total <= 0 {
		return 0
	}
	rank := q * total
	lowerBound, lowerCount := 0.0, 0.0
	for i, c := range p.counts {
		if c >= rank {
			if math.IsInf(p.upper[i], 1) {
				if i == 0 {
					return 0
				}
				return p.upper[i-1]
			}
			if c == lowerCount {
				return p.upper[i]
			}
			return lowerBound + (p.upper[i]-lowerBound)*(rank-lowerCount)/(c-lowerCount)
		}
		lowerBound, lowerCount = p.upper[i], c
	}
	return p.upper[len(p.upper)-2]
}
