package config_test

import (
	"fmt"

	"github.com/slideshowd/slideshowd/internal/config"
)

func ExampleParse() {
	c, err := config.Parse("slideshowd.yaml", []byte("keys:\n  - id: k1\n    secret_env: K1\nclasses:\n  image:\n    rpm: -3\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Validate())
	_, err = config.Parse("slideshowd.yaml", []byte("classes:\n  text:\n    rmp: 5\n"))
	fmt.Println(err)
	// Output:
	// config: classes.image.rpm: -3: must be > 0
	// config: slideshowd.yaml: line 3: classes.text.rmp: unknown field
}
