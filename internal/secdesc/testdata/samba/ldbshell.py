#!/usr/bin/python3
"""A line-oriented shell over a provisioned Samba sam.ldb, for samba_live_test.go.

Usage: /usr/bin/python3 ldbshell.py TARGETDIR, then one command per line on stdin,
fields separated by tabs (DNs contain spaces):

    domain                         -> ok <domain SID>
    adduser <cn>                   -> ok <objectSid>        (disabled user under CN=Users)
    add <dn> <objectClass> <b64|-> -> ok                    (b64: nTSecurityDescriptor of the add)
    modify <dn> <b64>              -> ok                    (replace, SD flags control 4: DACL only)
    read <dn>                      -> ok <base64>           (nTSecurityDescriptor, SD flags 4)

Every answer is one line, "ok ..." or "err <message>". DNs may use the
placeholder BASE for the domain's DN. The database is opened directly, so
every write goes through Samba's dsdb modules exactly as over LDAP.
"""
import base64
import sys

import ldb
from samba.auth import system_session
from samba.dcerpc import security
from samba.ndr import ndr_unpack
from samba.param import LoadParm
from samba.samdb import SamDB

lp = LoadParm()
lp.load(sys.argv[1] + "/etc/smb.conf")
db = SamDB(url=sys.argv[1] + "/private/sam.ldb", session_info=system_session(), lp=lp)
base = str(db.get_default_basedn())


def dn_of(text):
    return text.replace("BASE", base)


def run(args):
    cmd = args[0]
    if cmd == "domain":
        return str(db.get_domain_sid())
    if cmd == "adduser":
        dn = "CN=%s,CN=Users,%s" % (args[1], base)
        db.add({"dn": dn, "objectClass": "user", "sAMAccountName": args[1],
                "userAccountControl": "514"})
        res = db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["objectSid"])
        return str(ndr_unpack(security.dom_sid, res[0]["objectSid"][0]))
    if cmd == "add":
        msg = {"dn": dn_of(args[1]), "objectClass": args[2]}
        if args[3] != "-":
            msg["nTSecurityDescriptor"] = base64.b64decode(args[3])
        db.add(msg)
        return ""
    if cmd == "modify":
        m = ldb.Message()
        m.dn = ldb.Dn(db, dn_of(args[1]))
        m["nTSecurityDescriptor"] = ldb.MessageElement(
            base64.b64decode(args[2]), ldb.FLAG_MOD_REPLACE, "nTSecurityDescriptor")
        db.modify(m, controls=["sd_flags:1:4"])
        return ""
    if cmd == "read":
        res = db.search(base=dn_of(args[1]), scope=ldb.SCOPE_BASE,
                        attrs=["nTSecurityDescriptor"], controls=["sd_flags:1:4"])
        return base64.b64encode(res[0]["nTSecurityDescriptor"][0]).decode()
    raise ValueError("unknown command " + cmd)


for line in sys.stdin:
    # DNs contain spaces ("DC Manager <GUID>"), so fields are tab-separated.
    args = line.rstrip("\n").split("\t")
    try:
        out = "ok " + run(args)
    except Exception as e:  # report, keep serving
        out = "err " + str(e).replace("\n", " ")
    print(out, flush=True)
