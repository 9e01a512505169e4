// Package config reads slideshowd's configuration: a YAML file plus
// environment overrides, with defaults and a validation that names the field,
// the value and the reason of the first problem, on one line.
//
// # Basics
//
// Load reads the file named by Options.Path, or slideshowd.yaml in the
// working directory when that exists, or nothing (all defaults). Decoding is
// strict: an unknown field is an error naming it and its line. Then the
// environment overrides the file:
//
//   - GEMINI_API_KEYS: comma-separated entries SECRET or PROJECT:SECRET,
//     with ids key1..keyN; an entry without a project is its own project.
//     They replace the keys of the file (ParseEnvKeys).
//   - GEMINI_BASE_URL: the Gemini API base URL (base_url).
//   - SLIDESHOWD_DATA: the data directory (data): the bbolt file and the
//     jobs' inputs and outputs.
//   - SLIDESHOWD_TOKEN: the bearer token of the HTTP API (never in the file).
//   - SLIDESHOWD_REDIS_URL: the Redis shared by several processes (redis_url);
//     its password never appears in an error or in RedisURL's String.
//
// Keys in the file name the environment variable that holds their secret
// (secret_env); a literal secret is accepted with a warning. Secrets never
// appear in an error, a warning or the String of a Key: keys are named by id.
//
// Load returns the first problem; Check returns every problem, one line
// each (`slideshowd check` prints them). In a file, rpm, rpd, concurrency,
// max_active, max_body_bytes and daily_critical written as 0 are errors: a
// field left out takes its default, and 0 never silently means it. Integer
// fields take plain integers: a fraction or an exponent (rpm: 18.5, rpd:
// 1e2) is an error naming the field and the value, never truncated, as the
// HTTP API refuses "images": 2.5 and 1e1.
//
// # Caveats
//
// Load reads secrets from the environment only when Options.NeedSecrets is
// set: commands that only show usage know the keys by id and project and do
// not need them.
package config
