// Command detect runs deepwall's detection harness (package
// bench/detect): the OWASP CRS regression suite, the generated benign
// corpus and the public attack and benign corpora (bench/detect/corpus)
// through deepwall (default pack, imported CRS) and Coraza v3, and writes
// the per-family tables, false-positive rates and inspection rates as
// Markdown (stdout and OUT/detect.md) and JSON (OUT/detect.json).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/deepwall/deepwall/bench/detect"
)

func main() {
	var cfg detect.Config
	flag.StringVar(&cfg.Tests, "tests", "", "CRS go-ftw tests directory (default: the coraza-coreruleset module's tests/)")
	flag.StringVar(&cfg.Out, "out", "bench/detect/out", "directory for detect.json and detect.md")
	flag.IntVar(&cfg.Benign, "benign", 2000, "benign requests generated")
	flag.BoolVar(&cfg.NoCoraza, "no-coraza", false, "skip Coraza")
	flag.IntVar(&cfg.MaxPL, "max-pl", 4, "highest paranoia level measured for false positives")
	flag.IntVar(&cfg.CorpusPL, "corpus-pl", 2, "highest paranoia level Coraza runs the public corpora at (0: skip the public corpora)")
	flag.Parse()
	if err := detect.Main(cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "detect:", err)
		os.Exit(1)
	}
}
