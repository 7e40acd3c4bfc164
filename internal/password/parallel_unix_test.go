//go:build unix

package password

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkHashParallel hashes on every P at once, as the server's workers
// do under load, and reports the system CPU time and page faults per hash:
// each hash's 19 MiB comes from the Go heap, and what the heap takes back
// from the kernel between hashes is faulted in again. A single-threaded
// hash (BenchmarkHashDefault, and usher-bench's hash time) pays less of
// it, so this is the part of a hash's cost under load that the hashing
// floors' budget does not see. Run it with the server's GOGC and -cpu to
// compare settings (BENCHMARKS.md).
func BenchmarkHashParallel(b *testing.B) {
	p := DefaultParams()
	// Warm up: the heap grows to its working size before the measurement.
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
	sys := time.Duration(after.Stime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(sys.Microseconds())/1000/float64(b.N), "sys-ms/op")
	b.ReportMetric(float64(after.Minflt-before.Minflt)/float64(b.N), "faults/op")
}

func usage(b *testing.B) syscall.Rusage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru
}
