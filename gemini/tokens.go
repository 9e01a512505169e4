package gemini

import "unicode/utf8"

// Token estimation, for scheduler.Job.Tokens (checked against a lane's
// TPM before the call; the answer's usageMetadata.promptTokenCount then
// replaces the estimate through Lease.ReportTokens).
const (
	// CharsPerToken is the rule of thumb of the Gemini documentation:
	// about 4 characters make a token.
	CharsPerToken = 4
	// ImageTokens is the cost counted for one inline input image: Gemini 3
	// models read an image at their default (high) media resolution as up
	// to 1120 tokens.
	ImageTokens = 1120
)

// EstimateTokens estimates the input tokens of a request with text and
// images inline images: one token per CharsPerToken characters (rounded up)
// plus ImageTokens per image. Negative image counts count as 0.
func EstimateTokens(text string, images int) int {
	n := (utf8.RuneCountInString(text) + CharsPerToken - 1) / CharsPerToken
	if images > 0 {
		n += images * ImageTokens
	}
	return n
}
