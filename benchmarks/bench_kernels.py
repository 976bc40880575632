"""Each numba kernel against its NumPy reference: a layer's forward + backward,
float32, one thread, median of 7 (after one warm-up call).

    python benchmarks/bench_kernels.py
"""
import numpy as np, time
from tinyvae import layers as L, kernels as K
from tinyvae.threads import set_threads
set_threads(1)
rng=np.random.default_rng(0)
def t(f,n=7):
    f(); ts=[]
    for i in range(n):
        t0=time.perf_counter(); f(); ts.append(time.perf_counter()-t0)
    return np.median(ts)*1000
def row(name, fn):
    a=t(lambda: fn("numba")); b=t(lambda: fn("numpy"))
    print(f"{name:55s} numba {a:7.2f} ms  numpy {b:7.2f} ms  speed-up {b/a:5.1f}x")
x=rng.random((50,28,28,1),dtype=np.float32); w=rng.random((3,3,1,32),dtype=np.float32); b=np.zeros(32,np.float32)
def conv(be):
    out,c=L.conv2d_forward(x,w,b,backend=be); L.conv2d_backward(out,c)
row("conv2d fwd+bwd (50,28,28,1)->32", conv)
x2=rng.random((50,13,13,32),dtype=np.float32); w2=rng.random((3,3,32,64),dtype=np.float32); b2=np.zeros(64,np.float32)
def conv2(be):
    out,c=L.conv2d_forward(x2,w2,b2,backend=be); L.conv2d_backward(out,c)
row("conv2d fwd+bwd (50,13,13,32)->64", conv2)
x3=rng.random((50,26,26,32),dtype=np.float32); w3=rng.random((3,3,1,32),dtype=np.float32); b3=np.zeros(1,np.float32)
def convt(be):
    out,c=L.conv_transpose2d_forward(x3,w3,b3,backend=be); L.conv_transpose2d_backward(out,c)
row("conv_transpose2d fwd+bwd (50,26,26,32)->1", convt)
x4=rng.random((50,12,12,64),dtype=np.float32); w4=rng.random((3,3,32,64),dtype=np.float32); b4=np.zeros(32,np.float32)
def upct(be):
    out,c=L.upsample_conv_transpose2d_forward(x4,w4,b4,2,be); L.upsample_conv_transpose2d_backward(out,c)
row("upsample+conv_transpose2d fwd+bwd (50,12,12,64)->32", upct)
x5=rng.random((50,26,26,32),dtype=np.float32)
def pool(be):
    out,c=L.maxpool_forward(x5,2,be); L.maxpool_backward(out,c)
row("maxpool fwd+bwd (50,26,26,32)", pool)
n=929_093
p=rng.random(n,dtype=np.float32); g=rng.random(n,dtype=np.float32); m=np.zeros(n,np.float32); v=np.zeros(n,np.float32)
row("adam update, 929k params (simple VAE)", lambda be: K.adam_update(p,g,m,v,1e-4,.9,.999,1e-7,be))
