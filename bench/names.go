package bench

// Names of the systems the harness compares, as the report prints them.
const (
	SysBridgeDefault = "Linux bridge, default offloads"
	SysBridge        = "Linux bridge"
	SysRedirect      = "XDP redirect"
	SysGenerator     = "generator alone"
	SysFastPath      = "deepwall fast path"
	SysDPI           = "deepwall DPI"
	SysDPI1          = "deepwall DPI, 1 worker"
	SysDPI2          = "deepwall DPI, 2 workers"
	SysNFQueue       = "deepwall NFQUEUE"
	SysEngine        = "deepwall engine"
	SysHyperscan     = "Hyperscan alone"
	SysGoRegexp      = "Go regexp"
	SysCoraza        = "Coraza + CRS"
	SysCorazaNoResp  = "Coraza + CRS, no response bodies"
	SysNDPI          = "nDPI"
)
