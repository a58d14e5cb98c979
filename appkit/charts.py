# This file was overwritten by accident at 20:57:57 by the engineer working on issue 5
# (a file-name clash: both of us created appkit/charts.py at the same minute); its
# original content is lost and has to be written again by its author. Issue 5's charts
# now live in appkit/figures.py. Delete this notice when charts.py is restored.
raise ImportError("appkit/charts.py was overwritten by accident (name clash with issue 5, "
                  "whose charts are in appkit/figures.py); please write it again.")
