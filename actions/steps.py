"""Where a conversation can be: the steps of a booking and of a change, and the words both
flows share. Imported by `actions.booking` and `actions.appointments`, importing neither."""

BOOKING_STEPS = ("who", "service", "pick", "details")
# A reminder was sent: the patient's answer confirms, moves or cancels that appointment.
REMINDED = "reminded"
CHANGE_STEPS = ("which_appointment", "confirm_cancel", "confirm_reschedule", REMINDED)
# After a booking a bare "ok"/"great" is an acknowledgement, not a new booking.
JUST_BOOKED = "booked"
# "Would you like to book one? Reply YES": a yes starts a booking, a no closes.
OFFERED_TO_BOOK = "offer_to_book"
CALENDAR_DOWN = ("Sorry, our booking calendar isn't responding right now. Please try again in a "
                 "few minutes, or say \"talk to someone\" and the team will book you in.")
