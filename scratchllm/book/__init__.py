"""The manual's machinery: experiments that draw its figures and compute its numbers (the HTML/PDF build comes with
the book issue). Each experiment is a function a reader can rerun from the command line."""
