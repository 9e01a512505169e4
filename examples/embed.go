// Package examples holds the sample batch (batch.json, two slideshows of
// five images each, with a few slide images) that `slideshowd demo` runs,
// and the example configuration slideshowd.yaml.
package examples

import "embed"

// Batch holds batch.json and the slide images it names, so the demo runs
// wherever the binary is.
//
//go:embed batch.json slides/*.png
var Batch embed.FS

// BatchFile is the batch's name in Batch.
const BatchFile = "batch.json"
