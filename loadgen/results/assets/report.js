/* easload's HTML report: the page's own script, inlined into every report after uPlot (loadgen/results/html.py).
   It draws every chart of the chosen view with uPlot from the report-data JSON; the scenario's events as
   numbered dashed lines on every time chart (a draw hook); and records on each chart what it drew
   (data-points: data points in view after the draw, data-ink: coloured pixels on the plot canvas,
   data-markers: event markers), which tests/test_htmlreport_browser.py reads.  Strings from the data are
   only ever put into the page as text. */
(function(){
"use strict";
var root=document.documentElement,errs=[];
function fail(m){errs.push(String(m));root.setAttribute('data-js-errors',errs.join(' | '));}
window.addEventListener('error',function(e){fail(e.message);});
var D,T,DT,EV,H=230,plots=[],built=false,syncing=false,drawn=0,expected=0,current=-1;
var figs=Array.prototype.slice.call(document.querySelectorAll('figure.chart[data-chart]'));
function fmt(v){if(v===null||v===undefined)return '\u2013';var a=Math.abs(v);
  if(a>=1e6)return +(v/1e6).toFixed(1)+'M';if(a>=1e4)return +(v/1e3).toFixed(1)+'k';
  return a>=100?v.toFixed(0):a>=10?+v.toFixed(1)+'':a>=1?+v.toFixed(2)+'':a===0?'0':+v.toPrecision(2)+'';}
function fmtv(v){if(v===null||v===undefined)return '\u2013';var a=Math.abs(v);
  return a>=1000?Math.round(v).toLocaleString('en-US'):a>=100?v.toFixed(0):a>=10?v.toFixed(1):a>=1?v.toFixed(2):
    a===0?'0':v.toPrecision(3);}
function tl(s){s=Math.round(s);var h=Math.floor(s/3600),m=Math.floor(s%3600/60),r=s%60;
  if(s<60&&s>-60)return s+'s';var mm=(h&&m<10?'0':'')+m+':'+(r<10?'0':'')+r;return h?h+':'+mm:mm;}
function niceMax(mx){if(!(mx>0))return 1;var raw=mx/5,p=Math.pow(10,Math.floor(Math.log10(raw))),f=raw/p,
  step=(f<=1?1:f<=2?2:f<=2.5?2.5:f<=5?5:10)*p;return Math.ceil(mx/step-1e-9)*step;}
function stack(arrs){var acc=arrs.length?arrs[0].map(function(){return 0;}):[];
  return arrs.map(function(a){return a.map(function(v,j){return v===null?null:(acc[j]+=v);});});}
function drawEvents(u,fig){
  var ctx=u.ctx,b=u.bbox,pr=uPlot.pxRatio,n=0,mn=u.scales.x.min,mx=u.scales.x.max;
  ctx.save();ctx.strokeStyle='#222';ctx.lineWidth=Math.max(1,Math.round(1.5*pr));ctx.setLineDash([5*pr,4*pr]);
  EV.forEach(function(e,i){
    var badge=u.over.querySelector('.ev-marker[data-ev="'+i+'"]');
    if(!badge){badge=document.createElement('div');badge.className='ev-marker';badge.setAttribute('data-ev',String(i));
      badge.setAttribute('data-action',e.a);badge.textContent=String(i+1);
      badge.title='event '+(i+1)+' at '+e.t.toFixed(1)+' s: '+e.a+': '+e.r;u.over.appendChild(badge);}
    if(!(e.t>=mn&&e.t<=mx)){badge.style.display='none';return;}
    var x=Math.round(u.valToPos(e.t,'x',true))+0.5;
    ctx.beginPath();ctx.moveTo(x,b.top);ctx.lineTo(x,b.top+b.height);ctx.stroke();
    badge.style.display='';badge.style.left=u.valToPos(e.t,'x')+'px';n++;});
  ctx.restore();fig.setAttribute('data-markers',String(n));}
function measure(u,fig){
  var xs=u.data[0],mn=u.scales.x.min,mx=u.scales.x.max,n=0,si,j;
  for(si=1;si<u.series.length;si++){if(!u.series[si].show)continue;var d=u.data[si];
    for(j=0;j<d.length;j++)if(d[j]!==null&&d[j]!==undefined&&xs[j]>=mn&&xs[j]<=mx)n++;}
  fig.setAttribute('data-points',String(n));
  if(!u._inked){u._inked=true;var b=u.bbox,w=Math.floor(b.width),h=Math.floor(b.height),ink=0;
    if(w>0&&h>0){var px=u.ctx.getImageData(Math.round(b.left),Math.round(b.top),w,h).data;
      for(var i=0;i<px.length;i+=4){var r=px[i],g=px[i+1],bl=px[i+2];
        if(px[i+3]>0&&Math.max(r,g,bl)-Math.min(r,g,bl)>60)ink++;}}
    fig.setAttribute('data-ink',String(ink));}}
function hooks(fig,time){
  return {draw:[function(u){if(time)drawEvents(u,fig);measure(u,fig);
      if(!u._seen){u._seen=true;drawn++;if(built&&drawn===expected)ready();}}],
    setScale:[function(u,key){if(!time||key!=='x'||syncing||!built||!u._seen)return;syncing=true;
      plots.forEach(function(p){if(p!==u&&p._time)p.setScale('x',{min:u.scales.x.min,max:u.scales.x.max});});
      syncing=false;}]};}
function axis(label,values,extra){var a={label:label,labelSize:18,labelFont:'12px sans-serif',font:'12px sans-serif',
  stroke:'#333',grid:{stroke:'#e3e6ea',width:1},ticks:{stroke:'#bbb',width:1,size:4},values:values};
  for(var k in extra)a[k]=extra[k];return a;}
function options(fig,spec,width){
  var cat=spec.k==='cat',time=!cat,n=cat?spec.x.length:T.length;
  var raw=spec.s.map(function(s){return spec.r?s[2].map(function(v,i){return v===null?null:v/DT[i];}):s[2];});
  var ys=spec.k==='line'?raw:stack(raw),xs=[];for(var i=0;i<n;i++)xs.push(cat?i:T[i]);
  var bars=spec.k==='bars'||cat?uPlot.paths.bars({size:cat?[0.6,90]:[0.9,60],align:cat?0:-1}):null;
  var series=[{label:cat?spec.xl||'':'time',value:function(u,v){return v===null||v===undefined?'\u2013':
    cat?(spec.x[v]||''):tl(v)+' into the run';}}],bands=[];
  spec.s.forEach(function(s,i){
    var vals=raw[i],o={label:s[0],stroke:s[1],width:spec.k==='line'?2:1,spanGaps:false,
      value:function(u,v,si,di){return di===null||di===undefined||vals[di]===null?'\u2013':fmtv(vals[di])+' '+spec.u;}};
    if(s[3])o.dash=[6,4];
    if(spec.k==='stack')o.fill=s[1]+'cc';
    if(bars){o.fill=s[1];o.width=0;o.paths=bars;o.points={show:false};}
    series.push(o);if(spec.k!=='line'&&i>0)bands.push({series:[i+1,i]});});
  var opts={width:width,height:H,series:series,bands:bands,legend:{live:true},
    scales:{x:{time:false,range:cat?function(){return [-0.5,n-0.5];}:function(u,mn,mx){
        return mn===null||mn===xs[0]&&mx===xs[n-1]?[0,D.tmax]:[mn,mx];}},
      y:spec.log?{distr:3,log:10}:{range:function(u,mn,mx){return [0,niceMax((mx||0)*1.05)];}}},
    axes:[axis(cat?'':'time into the run',cat?function(u,sp){return sp.map(function(i){return spec.x[i]||'';});}:
        function(u,sp){return sp.map(tl);},cat?{splits:function(){return xs;},grid:{show:false}}:
        {incrs:[1,2,5,10,15,30,60,120,300,600,900,1800,3600,7200,14400,21600,43200,86400],size:26,labelSize:16,
          labelGap:0}),
      axis(spec.u,function(u,sp){return sp.map(function(v){return v===null?'':fmt(v);});},{size:58})],
    cursor:cat?{drag:{x:false,y:false}}:{sync:{key:'easload'},drag:{x:true,y:false}},
    hooks:hooks(fig,time)};
  return {opts:opts,data:[xs].concat(ys),time:time};}
function build(fig,spec,viewName){
  var box=fig.querySelector('.plot');
  ['data-points','data-ink','data-markers'].forEach(function(a){fig.removeAttribute(a);});
  while(box.firstChild)box.removeChild(box.firstChild);
  if(!spec){fig.classList.add('empty');box.classList.add('nodata');
    box.textContent=current===0&&box.getAttribute('data-empty')?box.getAttribute('data-empty'):
      'Nothing to draw: none of this in '+viewName+'.';fig.setAttribute('data-points','0');return;}
  fig.classList.remove('empty');box.classList.remove('nodata');
  var o=options(fig,spec,Math.max(280,box.clientWidth||560));expected++;
  var u=new uPlot(o.opts,o.data,box);u._time=o.time;u._box=box;plots.push(u);}
function ready(){root.setAttribute('data-charts',String(expected));root.setAttribute('data-report-ready','1');}
function show(vi){
  if(!(vi>=0&&vi<D.views.length))vi=0;current=vi;
  plots.forEach(function(p){p.destroy();});plots=[];built=false;drawn=0;expected=0;
  root.removeAttribute('data-report-ready');root.setAttribute('data-view',String(vi));
  var view=D.views[vi],sel=document.getElementById('view');if(sel)sel.value=String(vi);
  figs.forEach(function(fig){var k=fig.getAttribute('data-chart');
    build(fig,Object.prototype.hasOwnProperty.call(view.c,k)?view.c[k]:
      Object.prototype.hasOwnProperty.call(D.g,k)?D.g[k]:null,view.n);});
  built=true;if(drawn===expected)ready();}
try{
  D=JSON.parse(document.getElementById('report-data').textContent);T=D.t;DT=D.dt;EV=D.ev;
  var fromHash=function(){var m=/(?:^#|&)view=(\d+)/.exec(location.hash);return m?+m[1]:0;};show(fromHash());
  window.addEventListener('hashchange',function(){if(fromHash()!==current)show(fromHash());});
  var sel=document.getElementById('view');
  if(sel)sel.addEventListener('change',function(){show(+sel.value);
    if(history.replaceState)history.replaceState(null,'','#view='+sel.value);});
  var pend=null;window.addEventListener('resize',function(){clearTimeout(pend);pend=setTimeout(function(){
    plots.forEach(function(p){var w=p._box.clientWidth;if(w>0&&w!==p.width)p.setSize({width:w,height:H});});},100);});
}catch(e){fail(e&&e.stack||e);}
})();
