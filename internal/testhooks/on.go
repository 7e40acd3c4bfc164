//go:build testhooks

package testhooks

import "time"

// Enabled reports whether this binary was built with -tags testhooks.
const Enabled = true

// Panic panics when trigger names the point where.
func Panic(trigger, where string) {
	if trigger == where {
		panic("testhooks: injected panic at " + where)
	}
}

// Delay sleeps for d when trigger names the point where.
func Delay(trigger, where string, d time.Duration) {
	if trigger == where {
		time.Sleep(d)
	}
}
