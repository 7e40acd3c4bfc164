//go:build unix

package password

import (
	"syscall"
	"testing"
)

// BenchmarkHashParallel hashes on every P at once, as the server's workers
// do under load, and reports the system CPU time and page faults per hash.
// usher-bench times the hash time one hash after another (-cpu 1); what
// hashing on every core costs beyond that is a cost the hashing floors'
// budget does not see. With x/crypto's argon2, which allocates each hash's
// 19 MiB afresh, it was 1.3 to 1.7 times the hash time, much of it page
// faults; internal/argon2 reuses the memory (BENCHMARKS.md, "A pooled
// argon2id block"). Run it with -cpu 1,2 to compare.
func BenchmarkHashParallel(b *testing.B) {
	p := DefaultParams()
	// One hash first, so that a short run is not all the heap's first growth.
	if _, err := Hash("correct horse battery", p); err != nil {
		b.Fatal(err)
	}
	before := usage(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := Hash("correct horse battery", p); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	after := usage(b)
	b.ReportMetric(float64(after.Stime.Nano()-before.Stime.Nano())/1e6/float64(b.N), "sys-ms/op")
	b.ReportMetric(float64(after.Minflt-before.Minflt)/float64(b.N), "faults/op")
}

func usage(b *testing.B) syscall.Rusage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru
}
