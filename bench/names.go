package bench

// Names of the systems the harness compares, as the report prints them.
const (
	sysBridgeDefault = "Linux bridge, default offloads"
	sysBridge        = "Linux bridge"
	sysRedirect      = "XDP redirect"
	sysGenerator     = "generator alone"
	sysFastPath      = "deepwall fast path"
	sysFastPathXDP   = "deepwall fast path, XDP path"
	sysDPI           = "deepwall DPI"
	sysDPIXDP        = "deepwall DPI, XDP path"
	sysDPI1          = "deepwall DPI, 1 worker"
	sysDPI2          = "deepwall DPI, 2 workers"
	sysNFQueue       = "deepwall NFQUEUE"
	sysProxy         = "nginx reverse proxy"
	sysModSec        = "nginx + ModSecurity + CRS"
	sysEngine        = "deepwall engine"
	sysHyperscan     = "Hyperscan alone"
	sysGoRegexp      = "Go regexp"
	sysCoraza        = "Coraza + CRS"
	sysCorazaNoResp  = "Coraza + CRS, no response bodies"
	sysNDPI          = "nDPI"
)
