//go:build testhooks

package testhooks

// Enabled reports whether this binary was built with -tags testhooks.
const Enabled = true

// Panic panics when trigger names the point where.
func Panic(trigger, where string) {
	if trigger == where {
		panic("testhooks: injected panic at " + where)
	}
}
