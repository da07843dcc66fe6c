package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/gantry-dev/gantry/internal/api"
	"github.com/gantry-dev/gantry/internal/autoscale"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/invoke"
)

// addInvocationFlags adds the gateway's call limits, shared by gantry dev
// and gantry server.
func addInvocationFlags(f *pflag.FlagSet, inv *controlplane.Invocation) {
	inv.MaxRequestBody = invoke.DefaultMaxRequestBody
	f.Var((*byteSizeFlag)(&inv.MaxRequestBody), "max-request-body",
		"largest invocation request body accepted (e.g. 5MiB, 100MiB); larger ones get 413 before anything is queued")
	f.DurationVar(&inv.HostCallLimit, "host-call-limit", invoke.DefaultHostCallLimit,
		"how long a Host-routed (<fn>.invocation.<domain>) call may keep its connection")
	inv.MaxAssetSize = api.DefaultMaxAssetSize
	f.Var((*byteSizeFlag)(&inv.MaxAssetSize), "max-asset-size",
		"largest asset content accepted (POST /v2/nvcf/assets, then PUT to its uploadUrl); larger uploads get 413 and nothing is stored")
	f.DurationVar(&inv.AssetTTL, "asset-ttl", api.DefaultAssetTTL,
		"how long an asset lives before it and its content are deleted (NVCF: 24h)")
}

// addAutoscaleFlags adds the autoscaler's settings, shared by gantry dev
// and gantry server.
func addAutoscaleFlags(f *pflag.FlagSet, a *controlplane.Autoscale) {
	f.DurationVar(&a.ScaleDownDelay, "scale-down-delay", autoscale.DefaultScaleDownDelay,
		"how long a GPU spec must need fewer instances before any are removed; an idle version with minInstances 0 goes to zero after it")
}

// byteSizeFlag is a byte count written as a number with an optional unit:
// B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
type byteSizeFlag int64

var byteUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

func (b *byteSizeFlag) String() string {
	n := int64(*b)
	for i := 2; i >= 0; i-- { // the largest binary unit that divides n
		if u := byteUnits[i]; n != 0 && n%u.factor == 0 {
			return strconv.FormatInt(n/u.factor, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

func (b *byteSizeFlag) Set(s string) error {
	num, factor := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, factor = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/factor {
		return fmt.Errorf("%q is not a size: write a positive number of bytes, optionally with a unit (KiB, MiB, GiB, KB, MB, GB)", s)
	}
	*b = byteSizeFlag(n * factor)
	return nil
}

func (b *byteSizeFlag) Type() string { return "size" }
