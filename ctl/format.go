package ctl

import (
	"fmt"
	"time"
)

// Formatting shared by the commands' table output.

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func secs(s float64) string {
	d := time.Duration(s * 1e9)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
