// Command dtr-registry runs one dtr replica: the registry API, token auth,
// admin API and health endpoints. It runs as the dtr-registry image's
// entrypoint and as a plain process in tests.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "healthcheck":
		return healthcheck(args[1:])
	case "version", "--version":
		fmt.Println("dtr-registry", images.Version)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "dtr-registry: unknown command %q; use serve, healthcheck or version\n", args[0])
		return 2
	}
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func serve(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var o registry.Options
	fs.StringVar(&o.HTTPAddr, "http-addr", envOr("DTR_HTTP_ADDR", ":8080"), "listen address of the HTTP port ($DTR_HTTP_ADDR)")
	fs.StringVar(&o.DataDir, "data-dir", envOr("DTR_DATA_DIR", "/var/lib/dtr"), "directory of the replica's data ($DTR_DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := registry.Serve(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "dtr-registry:", err)
		return 1
	}
	return 0
}

// healthcheck is the image's exec-form HEALTHCHECK: the image has no shell or
// curl, so the binary asks its own /_ping.
func healthcheck(args []string) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	url := fs.String("url", envOr("DTR_HEALTHCHECK_URL", "http://127.0.0.1:8080/_ping"), "health endpoint to ask")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "unhealthy:", resp.Status)
		return 1
	}
	return 0
}
