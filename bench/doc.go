// Package bench measures slideshowd end to end. It has no API: everything is
// in its tests and benchmarks.
//
// # Basics
//
//   - The simulated day (day_test.go): the real stack (scheduler, gemini
//     client over the genai SDK, emulator through its in-process transport)
//     runs in one testing/synctest bubble, so a Pacific day of quota passes
//     in seconds. Each scenario is a test that asserts its bounds; -report
//     prints its table and writes its plots.
//   - The hot path and the scheduler: BenchmarkAcquire*, BenchmarkScheduler*.
//   - The design slideshowd replaces: BenchmarkOldRedisDesign against a real
//     redis-server (bench/redis.sh starts one), next to BenchmarkAcquire.
//
// README.md holds the figures, the commands that produced them and the
// definitions of what is measured.
//
// # Caveats
//
// The full-scale day (published limits: 50,000 text and 1,250 image calls)
// runs only with -day; without it each scenario runs at a tenth of the
// limits and asserts the same bounds, so `go test -race ./bench/` stays
// within a minute on two cores.
package bench
