// The console works without this file; it only adds conveniences.
document.addEventListener('click', (event) => {
  const link = event.target.closest('#load-remote');
  if (link) {
    // Remote images in a message body load only when the reader asks.
    event.preventDefault();
    document.getElementById(link.dataset.frame).src = link.dataset.src;
    link.remove();
  }
});
