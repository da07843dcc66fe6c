package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
)

// TargetMEKRotation is the longest a MEK rotation over 100,000 NEKs may take.
const TargetMEKRotation = 5 * time.Second

// MEKConfig configures RunMEK. Zero values take the defaults named.
type MEKConfig struct {
	// NEKs is the number of accounts, one NEK each (default 100000).
	NEKs int
	// Secrets are sealed for the first accounts before the rotation
	// (default 1000), to show that a MEK rotation rewrites none.
	Secrets int
	// BatchSize and Workers are the rotation's (defaults
	// secrets.DefaultBatchSize and secrets.DefaultWorkers).
	BatchSize int
	Workers   int
	// Runs is how many times the whole measurement repeats, each on a
	// fresh etcd (default 3); medians are reported.
	Runs int
	// Progress receives a line per step (nil discards them).
	Progress io.Writer
}

func (c *MEKConfig) defaults() error {
	if c.NEKs == 0 {
		c.NEKs = 100000
	}
	if c.Secrets == 0 {
		c.Secrets = 1000
	}
	if c.BatchSize == 0 {
		c.BatchSize = secrets.DefaultBatchSize
	}
	if c.Workers == 0 {
		c.Workers = secrets.DefaultWorkers
	}
	if c.Runs == 0 {
		c.Runs = 3
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	switch {
	case c.NEKs < 1 || c.NEKs > 10000000:
		return fmt.Errorf("bench: NEKs %d is out of range 1-10000000", c.NEKs)
	case c.Secrets < 0 || c.Secrets > c.NEKs*100:
		return fmt.Errorf("bench: secrets %d is out of range 0-%d", c.Secrets, c.NEKs*100)
	case c.BatchSize < 1 || c.BatchSize > 128:
		return fmt.Errorf("bench: batch size %d is out of range 1-128 (etcd's default --max-txn-ops)", c.BatchSize)
	case c.Workers < 1 || c.Workers > 64:
		return fmt.Errorf("bench: workers %d is out of range 1-64", c.Workers)
	case c.Runs < 1 || c.Runs > 20:
		return fmt.Errorf("bench: runs %d is out of range 1-20", c.Runs)
	}
	return nil
}

// MEKResult is what RunMEK measured.
type MEKResult struct {
	NEKs      int `json:"neks"`
	Secrets   int `json:"secrets"`
	BatchSize int `json:"batchSize"`
	Workers   int `json:"workers"`
	// Runs are the individual measurements; the fields below are their
	// medians.
	Runs []MEKRun `json:"runs"`
	// Baseline is the time to read every NEK record once, in pages, as a
	// rotation's scan does; Rotation the time RotateMEK took.
	Baseline      time.Duration `json:"baselineNs"`
	Rotation      time.Duration `json:"rotationNs"`
	NEKsPerSecond float64       `json:"neksPerSecond"`
	Targets       []Target      `json:"targets"`
}

// MEKRun is one measurement on a fresh etcd.
type MEKRun struct {
	// Setup is the untimed creation of the NEKs and secrets.
	Setup         time.Duration `json:"setupNs"`
	Baseline      time.Duration `json:"baselineNs"`
	Rotation      time.Duration `json:"rotationNs"`
	NEKsPerSecond float64       `json:"neksPerSecond"`
	// Rewrapped is what RotateMEK reported; LeftOnOldMEK counts NEK
	// records still wrapped by the old version afterwards (must be 0).
	Rewrapped    int `json:"rewrapped"`
	LeftOnOldMEK int `json:"leftOnOldMek"`
	// SecretsRewritten counts secrets whose etcd revision changed during
	// the rotation (must be 0); SecretsOpened those a fresh service opened
	// afterwards (must be all).
	SecretsRewritten int  `json:"secretsRewritten"`
	SecretsOpened    int  `json:"secretsOpened"`
	OldMEKRetired    bool `json:"oldMekRetired"`
}

// RunMEK measures a MEK rotation on the real engines: for each run it
// starts an embedded etcd in a temporary directory, gives NEKs accounts a
// key each (through the secret store, wrapped by MEK version 1 from a key
// file), seals Secrets secrets, reads every NEK record once as a baseline,
// and times secrets.Service.RotateMEK. Afterwards it checks that no NEK is
// left on the old MEK, that no secret's etcd revision changed, and that a
// fresh service opens every secret.
func RunMEK(ctx context.Context, cfg MEKConfig) (*MEKResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	res := &MEKResult{NEKs: cfg.NEKs, Secrets: cfg.Secrets, BatchSize: cfg.BatchSize, Workers: cfg.Workers}
	for i := range cfg.Runs {
		fmt.Fprintf(cfg.Progress, "run %d/%d\n", i+1, cfg.Runs)
		r, err := runMEKOnce(ctx, cfg)
		if err != nil {
			return nil, err
		}
		res.Runs = append(res.Runs, r)
	}
	var base, rot []time.Duration
	var rates []float64
	for _, r := range res.Runs {
		base, rot, rates = append(base, r.Baseline), append(rot, r.Rotation), append(rates, r.NEKsPerSecond)
	}
	res.Baseline, res.Rotation, res.NEKsPerSecond = Median(base), Median(rot), Median(rates)
	res.Targets = mekTargets(res)
	return res, nil
}

func mekTargets(res *MEKResult) []Target {
	rewritten, left, opened, retired := 0, 0, true, true
	for _, r := range res.Runs {
		rewritten += r.SecretsRewritten
		left += r.LeftOnOldMEK
		opened = opened && r.SecretsOpened == res.Secrets
		retired = retired && r.OldMEKRetired
	}
	return []Target{
		{Name: fmt.Sprintf("MEK rotation over %d NEKs (median)", res.NEKs), Want: fmt.Sprintf("<= %.1fs", TargetMEKRotation.Seconds()),
			Got: fmt.Sprintf("%.2fs", res.Rotation.Seconds()), Pass: res.Rotation <= TargetMEKRotation},
		{Name: "secrets rewritten by the rotation (all runs)", Want: "0", Got: fmt.Sprint(rewritten), Pass: rewritten == 0},
		{Name: "NEKs left on the old MEK (all runs)", Want: "0", Got: fmt.Sprint(left), Pass: left == 0},
		{Name: "old MEK retired, every secret opens (all runs)", Want: "yes", Got: yesNo(opened && retired), Pass: opened && retired},
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func runMEKOnce(ctx context.Context, cfg MEKConfig) (MEKRun, error) {
	var run MEKRun
	dir, err := os.MkdirTemp("", "gantry-bench-mek-")
	if err != nil {
		return run, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	e, err := store.StartEmbedded(filepath.Join(dir, "etcd"), 30*time.Second)
	if err != nil {
		return run, err
	}
	defer e.Close()
	st := store.New(e.Client(), "")
	keys := filepath.Join(dir, "keys")
	svc := secrets.NewService(st, secrets.NewFileMEK(keys), nil, secrets.WithBatchSize(cfg.BatchSize), secrets.WithWorkers(cfg.Workers))
	if err := svc.Start(ctx); err != nil {
		return run, err
	}

	start := time.Now()
	places, err := mekSetup(ctx, cfg, st, svc)
	if err != nil {
		return run, err
	}
	before, err := secretRevisions(ctx, st)
	if err != nil {
		return run, err
	}
	run.Setup = time.Since(start)
	fmt.Fprintf(cfg.Progress, "  %d NEKs and %d secrets written in %.1fs\n", cfg.NEKs, len(places), run.Setup.Seconds())

	start = time.Now()
	n := 0
	for cursor := ""; ; {
		page, next, err := st.ScanNEKs(ctx, cursor, 1024)
		if err != nil {
			return run, err
		}
		n += len(page)
		if next == "" {
			break
		}
		cursor = next
	}
	run.Baseline = time.Since(start)
	if n != cfg.NEKs {
		return run, fmt.Errorf("bench: read %d NEK records, wrote %d", n, cfg.NEKs)
	}
	fmt.Fprintf(cfg.Progress, "  baseline: read %d NEK records in %.3fs\n", n, run.Baseline.Seconds())

	step := max(cfg.NEKs/10, 1)
	next := step
	start = time.Now()
	rot, err := svc.RotateMEK(ctx, func(done, total int) {
		if done >= next {
			fmt.Fprintf(cfg.Progress, "  re-wrapped %d/%d NEKs\n", done, total)
			next += step
		}
	})
	if err != nil {
		return run, err
	}
	run.Rotation = time.Since(start)
	run.Rewrapped = rot.Rewrapped
	run.NEKsPerSecond = float64(rot.Rewrapped) / run.Rotation.Seconds()
	fmt.Fprintf(cfg.Progress, "  rotation: %d NEKs in %.3fs (%.0f NEKs/s)\n", rot.Rewrapped, run.Rotation.Seconds(), run.NEKsPerSecond)

	return run, mekCheck(ctx, st, keys, rot, places, before, &run)
}

// mekSetup gives every account a NEK, concurrently in batches, and seals
// the secrets.
func mekSetup(ctx context.Context, cfg MEKConfig, st *store.Store, svc *secrets.Service) ([]secrets.Place, error) {
	accounts := make([]string, cfg.NEKs)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("bench-%07d", i)
	}
	const chunk = 2000
	if err := forEachConcurrently(ctx, (len(accounts)+chunk-1)/chunk, 4, func(ctx context.Context, i int) error {
		return svc.EnsureAccountKeys(ctx, accounts[i*chunk:min((i+1)*chunk, len(accounts))]...)
	}); err != nil {
		return nil, err
	}
	// Ten secrets per function version, spread over the first accounts.
	var places []secrets.Place
	var mu sync.Mutex
	fns := (cfg.Secrets + 9) / 10
	err := forEachConcurrently(ctx, fns, 4, func(ctx context.Context, i int) error {
		account := accounts[i%len(accounts)]
		f := &model.Function{ID: fmt.Sprintf("bench-fn-%05d", i), VersionID: fmt.Sprintf("bench-ver-%05d", i), NCAID: account}
		var sealed []store.SealedSecret
		var ps []secrets.Place
		for j := 0; j < 10 && i*10+j < cfg.Secrets; j++ {
			p := secrets.Place{Account: account, FunctionID: f.ID, VersionID: f.VersionID, Name: fmt.Sprintf("SECRET_%d", j)}
			s, err := svc.Seal(ctx, p, []byte(benchSecretValue(p)))
			if err != nil {
				return err
			}
			sealed = append(sealed, store.SealedSecret{Name: p.Name, Account: account, NEK: s.NEK, Ciphertext: s.Ciphertext, HeadRevision: s.HeadRevision})
			ps = append(ps, p)
		}
		if err := st.CreateFunction(ctx, f, sealed); err != nil {
			return err
		}
		mu.Lock()
		places = append(places, ps...)
		mu.Unlock()
		return nil
	})
	return places, err
}

func benchSecretValue(p secrets.Place) string { return "bench-value-" + p.FunctionID + "-" + p.Name }

// secretRevisions maps every secret's key to its etcd revision.
func secretRevisions(ctx context.Context, st *store.Store) (map[string]int64, error) {
	out := map[string]int64{}
	for cursor := ""; ; {
		page, next, err := st.ScanSecrets(ctx, cursor, 1024)
		if err != nil {
			return nil, err
		}
		for _, s := range page {
			out[s.FunctionID+"/"+s.VersionID+"/"+s.Name] = s.Revision
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

// mekCheck verifies what the rotation left behind.
func mekCheck(ctx context.Context, st *store.Store, keys string, rot secrets.RotationResult, places []secrets.Place, before map[string]int64, run *MEKRun) error {
	for cursor := ""; ; {
		page, next, err := st.ScanNEKs(ctx, cursor, 1024)
		if err != nil {
			return err
		}
		for _, n := range page {
			if n.MEK != rot.Target {
				run.LeftOnOldMEK++
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	after, err := secretRevisions(ctx, st)
	if err != nil {
		return err
	}
	for k, rev := range before {
		if after[k] != rev {
			run.SecretsRewritten++
		}
	}
	meta, err := st.GetESSMeta(ctx)
	if err != nil {
		return err
	}
	if m, ok := meta.MEK(rot.From); ok {
		run.OldMEKRetired = m.Status == store.KeyRetired
	}
	fresh := secrets.NewService(st, secrets.NewFileMEK(keys), nil)
	for _, p := range places {
		sec, err := st.GetSecret(ctx, p.FunctionID, p.VersionID, p.Name)
		if err != nil {
			return err
		}
		got, err := fresh.Open(ctx, p, secrets.Sealed{NEK: sec.NEK, Ciphertext: sec.Ciphertext})
		if err == nil && string(got) == benchSecretValue(p) {
			run.SecretsOpened++
		}
	}
	return nil
}
