#!/usr/bin/env python3
"""Per-function instruction counts of a callgrind run of .NET code, with JIT symbols from the runtime's perf map.

Usage: cgsyms.py CALLGRIND_OUT /tmp/perf-PID.map [N]   (N: divide the counts by N, e.g. the number of faults)
Record with: DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0 valgrind --tool=callgrind --dump-instr=yes ...
(callgrind_annotate shows JIT code as one anonymous blob; this maps each instruction address to its method.)
"""
import sys, bisect, re, collections
cg, pm = sys.argv[1], sys.argv[2]
per = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
syms=[]
for l in open(pm):
    a,s,n=l.rstrip('\n').split(' ',2); syms.append((int(a,16),int(s,16),n))
syms.sort(); starts=[s[0] for s in syms]
def sym(a):
    i=bisect.bisect_right(starts,a)-1
    if i>=0 and a<syms[i][0]+syms[i][1]: return syms[i][2]
    return None
cost=collections.Counter(); objcost=collections.Counter()
addr=0; line=0; obj=''; skip=False; nf=0
names={}
def val(tok,cur):
    if tok=='*': return cur
    if tok[0] in '+-': return cur+int(tok,0) if tok[0]=='+' else cur-int(tok[1:],0)
    return int(tok,0)
for l in open(cg):
    if not l or l[0].isalpha():
        if l.startswith('calls='): skip=True
        elif l.startswith('obj='):
            m=re.match(r'obj=\((\d+)\)\s*(.*)',l.strip()); 
            if m.group(2): names[m.group(1)]=m.group(2)
            obj=names.get(m.group(1),'')
        continue
    p=l.split()
    if not p or not (p[0][0] in '0+-*'): continue
    addr=val(p[0],addr); 
    if len(p)>=3: line=val(p[1],line); c=int(p[2])
    elif len(p)==2: c=int(p[1])
    else: continue
    if skip: skip=False; continue
    s=sym(addr) if obj.endswith('???') or obj=='' or 'perf' in obj else None
    if s: cost[s]+=c
    else: objcost[obj.split('/')[-1]]+=c
tot=sum(cost.values())+sum(objcost.values())
print('total',tot)
for n,c in (cost+objcost).most_common(40): print(f'{c/per:12.1f} {n[:150] or "(native code outside the perf map)"}')
