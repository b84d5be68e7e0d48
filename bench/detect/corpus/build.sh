#!/bin/sh
# Rebuilds the public corpora of bench/detect from git snapshots of their
# repositories (see SOURCES.md for the commits and licences):
#   build.sh PATT_GIT_DIR LIBINJECTION_GIT_DIR TOPUA_GIT_DIR CRAWLERUA_GIT_DIR
# Each output line is one payload or value, as the list has it; lists are
# de-duplicated and thinned to at most $MAX lines by taking every k-th line
# in sorted order, so the same snapshots give the same files.
set -eu
MAX=${MAX:-400}
patt=$1 linj=$2 topua=$3 crawl=$4
here=$(dirname "$0")
mkdir -p "$here/attack" "$here/benign"

# take GITDIR OUT FILE...: the files' lines, de-duplicated and thinned.
take() {
	g=$1 out=$2
	shift 2
	for f in "$@"; do git --git-dir="$g" show "HEAD:$f"; done |
		tr -d '\r' | grep -v '^[[:space:]]*$' | grep -v '^#' | LC_ALL=C sort -u >"$out.all"
	n=$(wc -l <"$out.all")
	k=$(((n + MAX - 1) / MAX))
	awk -v k="$k" '(NR - 1) % k == 0' "$out.all" >"$out"
	rm "$out.all"
}

take "$patt" "$here/attack/sqli.txt" \
	"SQL Injection/Intruder/Auth_Bypass.txt" "SQL Injection/Intruder/Generic_ErrorBased.txt" \
	"SQL Injection/Intruder/Generic_TimeBased.txt" "SQL Injection/Intruder/Generic_UnionSelect.txt" \
	"SQL Injection/Intruder/FUZZDB_MYSQL.txt" "SQL Injection/Intruder/FUZZDB_MSSQL.txt" \
	"SQL Injection/Intruder/FUZZDB_Oracle.txt" "SQL Injection/Intruder/FUZZDB_Postgres_Enumeration.txt" \
	"SQL Injection/Intruder/SQLi_Polyglots.txt" "SQL Injection/Intruder/payloads-sql-blind-MySQL-WHERE"
take "$patt" "$here/attack/xss.txt" \
	"XSS Injection/Intruders/IntrudersXSS.txt" "XSS Injection/Intruders/JHADDIX_XSS.txt" \
	"XSS Injection/Intruders/RSNAKE_XSS.txt" "XSS Injection/Intruders/XSS_Polyglots.txt" \
	"XSS Injection/Intruders/xss_payloads_quick.txt" "XSS Injection/Intruders/BRUTELOGIC-XSS-STRINGS.txt"
take "$patt" "$here/attack/cmdi.txt" \
	"Command Injection/Intruder/command-execution-unix.txt" "Command Injection/Intruder/command_exec.txt"
git --git-dir="$patt" show "HEAD:Directory Traversal/Intruder/deep_traversal.txt" |
	awk '{ f = (NR % 2) ? "etc/passwd" : "windows/win.ini"; gsub(/\{FILE\}/, f); print }' >"$here/deep.tmp"
take "$patt" "$here/attack/traversal.txt" \
	"Directory Traversal/Intruder/directory_traversal.txt" "Directory Traversal/Intruder/dotdotpwn.txt" \
	"File Inclusion/Intruders/Traversal.txt"
cat "$here/deep.tmp" >>"$here/attack/traversal.txt" && rm "$here/deep.tmp"
LC_ALL=C sort -u "$here/attack/traversal.txt" >"$here/trav.tmp"
k=$((($(wc -l <"$here/trav.tmp") + MAX - 1) / MAX))
awk -v k="$k" '(NR - 1) % k == 0' "$here/trav.tmp" >"$here/attack/traversal.txt" && rm "$here/trav.tmp"
take "$patt" "$here/attack/lfi.txt" \
	"File Inclusion/Intruders/JHADDIX_LFI.txt" "File Inclusion/Intruders/Linux-files.txt" \
	"File Inclusion/Intruders/Windows-files.txt" "File Inclusion/Intruders/List_Of_File_To_Include.txt" \
	"File Inclusion/Intruders/LFI-FD-check.txt" "File Inclusion/Intruders/simple-check.txt"
take "$patt" "$here/attack/ssti.txt" "Server Side Template Injection/Intruder/ssti.fuzz"
take "$patt" "$here/attack/nosqli.txt" "NoSQL Injection/Intruder/MongoDB.txt" "NoSQL Injection/Intruder/NoSQL.txt"
take "$patt" "$here/attack/ldapi.txt" "LDAP Injection/Intruder/LDAP_FUZZ.txt" "LDAP Injection/Intruder/LDAP_FUZZ_SMALL.txt"

MAX=100000 take "$linj" "$here/benign/tokenizer.txt" data/false_positives.txt
git --git-dir="$topua" show HEAD:src/index.json HEAD:src/desktop.json HEAD:src/mobile.json 2>/dev/null |
	sed -n 's/^ *"\(.*\)",\{0,1\}$/\1/p' >"$here/ua.tmp"
git --git-dir="$crawl" show HEAD:crawler-user-agents.json |
	python3 -c 'import json,sys; [print(i) for p in json.load(sys.stdin) for i in p.get("instances", [])]' >>"$here/ua.tmp"
# Security scanners' agents are left out: the default pack's 913100 blocks
# them on purpose (the same list as its regex).
LC_ALL=C sort -u "$here/ua.tmp" | grep -v '^$' |
	grep -Eiv 'sqlmap|nikto|nmap|masscan|nuclei|wpscan|acunetix|netsparker|dirbuster|gobuster|feroxbuster|ffuf|wfuzz|zgrab|openvas|nessus|havij|arachni|w3af|whatweb|jaeles|commix|xsstrike|fimap|dirsearch' \
		>"$here/benign/useragents.txt" && rm "$here/ua.tmp"
wc -l "$here"/attack/*.txt "$here"/benign/*.txt
