// Package slideshowd runs Gemini API work through a pool of API keys while
// keeping every (project, model) quota exactly. See the bucket, store,
// scheduler and gemini packages, and cmd/slideshowd for the daemon.
package slideshowd
