// Package pipeline runs slideshow jobs for the daemon: one analysis on the
// text class, then the requested images on the image class, each step's
// state and output stored before it is reported done, so a restart resumes
// where it stopped.
package pipeline
