// compose-check loads a Compose file the way `docker compose` does, with the library Docker
// Compose is built on (github.com/compose-spec/compose-go/v2): .env and OS environment for
// interpolation, the Compose schema, env_file merging, profiles, consistency checks
// (depends_on, networks, volumes...). It prints the resolved project as JSON, or the error
// and exit status 1. No Docker engine involved: the tests use it where there is none.
//
//	compose-check [--profile NAME]... FILE
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	var profiles, files []string
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		if args[i] == "--profile" && i+1 < len(args) {
			profiles = append(profiles, args[i+1])
			i++
			continue
		}
		files = append(files, args[i])
	}
	if len(files) != 1 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [--profile NAME]... FILE")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions(files,
		// As `docker compose`: .env next to the file, read before interpolation.
		cli.WithOsEnv, cli.WithEnvFiles(), cli.WithDotEnv, cli.WithProfiles(profiles),
		cli.WithConsistency(true))
	fail(err)
	project, err := opts.LoadProject(context.Background())
	fail(err)
	out, err := project.MarshalJSON()
	fail(err)
	_, err = os.Stdout.Write(out)
	fail(err)
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
