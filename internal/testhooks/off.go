//go:build !testhooks

// Package testhooks lets tests built with -tags testhooks inject faults at
// named points of the real code paths. In a normal build every hook is a
// no-op the compiler removes, and nothing reads the trigger from a request.
package testhooks

import "time"

// Enabled reports whether this binary was built with -tags testhooks.
const Enabled = false

// Panic panics when trigger names the point where; never in normal builds.
func Panic(trigger, where string) {}

// Delay sleeps for d when trigger names the point where; never in normal
// builds.
func Delay(trigger, where string, d time.Duration) {}
