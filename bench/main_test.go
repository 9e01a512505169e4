package bench

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// Flags of the simulated day (see README.md).
var (
	fullDay = flag.Bool("day", false, "run the simulated-day scenarios at the published limits (slow) instead of a tenth of them")
	report  = flag.Bool("report", false, "print each scenario's report table and write its SVG plots under -plots")
	plotDir = flag.String("plots", "plots", "directory the -report plots are written to")
	seedArg = flag.Uint64("seed", 0, "seed of the randomized scenarios (0: from the clock; the seed used is logged)")
)

func TestMain(m *testing.M) {
	// go.opencensus.io, imported by the genai SDK's dependencies, starts a
	// worker in an init function.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}
